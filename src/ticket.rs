//! Change and incident tickets: their shape and the placeholder for a missing one. A leaf
//! module: the config (change tickets of windows), the engine (preflight), the request
//! policy and the CLI all check tickets, and none of them should depend on another for it.

/// The ticket recorded when an event-triggered rotation carries none; the escalation
/// says so, so that someone files the INC.
pub const INC_PENDING: &str = "INC-pending";

/// `CHG-10421`, `INC-123`: a prefix, a dash, digits. Planned rotations carry a `CHG`
/// ticket; emergency rotations and rollbacks an `INC` one (a rollback may carry either).
pub fn is_ticket(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_shapes() {
        assert!(is_ticket("CHG-10421", "CHG"));
        assert!(is_ticket("INC-1", "INC"));
        assert!(!is_ticket("CHG-", "CHG"));
        assert!(!is_ticket("CHG10421", "CHG"));
        assert!(!is_ticket("INC-12", "CHG"));
        assert!(!is_ticket("INC-12a", "INC"));
        assert!(!is_ticket("INC--12", "INC"));
        assert!(!is_ticket(" INC-12", "INC"));
    }

    #[test]
    fn the_placeholder_is_not_a_ticket() {
        // The escalation says "INC-pending" so that someone files one: it must never pass
        // for a real incident ticket.
        assert!(!is_ticket(INC_PENDING, "INC"));
    }
}
