//! The `mismatched_place` check: an event's own account and region against those of the
//! secret ARN it names.

use super::{Normalized, Rejection, echo};

/// Refuses an event whose own account or region differs from the one of the secret ARN it
/// names (a secret named by bare name has no place to compare).
pub(super) fn same_place(n: Normalized) -> Result<Normalized, Rejection> {
    let (secret, account, region) = match &n {
        Normalized::Rotation(r) => (&r.secret_id, &r.account, &r.region),
        Normalized::Compromise(c) => (&c.secret_id, &c.account, &None),
        Normalized::Departure(_) | Normalized::Request(_) => return Ok(n),
    };
    let Ok(arn) = crate::arn::Arn::parse(secret) else {
        return Ok(n);
    };
    for (field, event, of_arn) in [
        ("account", account, arn.account),
        ("region", region, arn.region),
    ] {
        if let Some(event) = event.as_deref().filter(|e| *e != of_arn) {
            return Err(Rejection::MismatchedPlace {
                field,
                event: echo(event),
                arn: echo(of_arn),
            });
        }
    }
    Ok(n)
}
