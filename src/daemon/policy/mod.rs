//! The executor's policies over event-triggered work: the storm guard ([`storm`]), which
//! pauses event rotations past `max_event_rotations_per_hour`, and the departure SLA watch
//! ([`sla`]), which escalates departures whose deadline is near or past.

pub mod sla;
pub mod storm;
