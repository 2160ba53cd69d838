//! What an alert is: its kind, the severity and audience the guide gives it, its summary
//! and the runbook steps from the Secrets Rotation Guide that apply to it. Pure data, no I/O.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    P1,
    P2,
    P3,
}

impl Severity {
    /// 1 for P1 ... 3 for P3: a channel that takes "at least P2" takes ranks 1 and 2.
    pub fn rank(self) -> u8 {
        match self {
            Severity::P1 => 1,
            Severity::P2 => 2,
            Severity::P3 => 3,
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::P1, Severity::P2, Severity::P3]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
        }
    }
}

/// Who an alert is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// `[alerts] security_topic_arn`.
    Security,
    /// `[alerts] notify_topic_arn` (dependent teams); skipped when not configured.
    Notify,
    /// `[requests] approvers_topic_arn`, else the Security topic.
    Approvers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    RotationFailed,
    RotationAbandoned,
    RotationStuck,
    BreachSuspected,
    DepartureSlaAtRisk,
    DepartureSlaMissed,
    Overdue,
    RotationStorm,
    SecretMissing,
    AwsUnreachable,
    AccountUnreachable,
    DependentsUnhealthy,
    RotationScheduled,
    RotationCompleted,
    NativeScheduleDrift,
    ApprovalRequested,
    ApprovalOverdue,
    StateLost,
    DepartureUnresolved,
    ObserveSummary,
    RollbackEscalated,
    RollbackCompleted,
    RollbackForced,
}

impl AlertKind {
    pub const ALL: &'static [AlertKind] = &[
        AlertKind::RotationFailed,
        AlertKind::RotationAbandoned,
        AlertKind::RotationStuck,
        AlertKind::BreachSuspected,
        AlertKind::DepartureSlaAtRisk,
        AlertKind::DepartureSlaMissed,
        AlertKind::Overdue,
        AlertKind::RotationStorm,
        AlertKind::SecretMissing,
        AlertKind::AwsUnreachable,
        AlertKind::AccountUnreachable,
        AlertKind::DependentsUnhealthy,
        AlertKind::RotationScheduled,
        AlertKind::RotationCompleted,
        AlertKind::NativeScheduleDrift,
        AlertKind::ApprovalRequested,
        AlertKind::ApprovalOverdue,
        AlertKind::StateLost,
        AlertKind::DepartureUnresolved,
        AlertKind::ObserveSummary,
        AlertKind::RollbackEscalated,
        AlertKind::RollbackCompleted,
        AlertKind::RollbackForced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::RotationFailed => "rotation_failed",
            AlertKind::RotationAbandoned => "rotation_abandoned",
            AlertKind::RotationStuck => "rotation_stuck",
            AlertKind::BreachSuspected => "breach_suspected",
            AlertKind::DepartureSlaAtRisk => "departure_sla_at_risk",
            AlertKind::DepartureSlaMissed => "departure_sla_missed",
            AlertKind::Overdue => "overdue",
            AlertKind::RotationStorm => "rotation_storm",
            AlertKind::SecretMissing => "secret_missing",
            AlertKind::AwsUnreachable => "aws_unreachable",
            AlertKind::AccountUnreachable => "account_unreachable",
            AlertKind::DependentsUnhealthy => "dependents_unhealthy",
            AlertKind::RotationScheduled => "rotation_scheduled",
            AlertKind::RotationCompleted => "rotation_completed",
            AlertKind::NativeScheduleDrift => "native_schedule_drift",
            AlertKind::ApprovalRequested => "approval_requested",
            AlertKind::ApprovalOverdue => "approval_overdue",
            AlertKind::StateLost => "state_lost",
            AlertKind::DepartureUnresolved => "departure_unresolved",
            AlertKind::ObserveSummary => "observe_summary",
            AlertKind::RollbackEscalated => "rollback_escalated",
            AlertKind::RollbackCompleted => "rollback_completed",
            AlertKind::RollbackForced => "rollback_forced",
        }
    }

    pub fn parse(s: &str) -> Option<AlertKind> {
        AlertKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// The Secrets Rotation Guide: rotation failed, breach suspected and dependents failing go to Security
    /// at once (P1).
    pub fn severity(self) -> Severity {
        match self {
            AlertKind::RotationFailed
            | AlertKind::RotationStuck
            | AlertKind::BreachSuspected
            | AlertKind::DepartureSlaAtRisk
            | AlertKind::DepartureSlaMissed
            | AlertKind::RotationStorm
            | AlertKind::DependentsUnhealthy
            | AlertKind::ApprovalOverdue
            | AlertKind::StateLost
            | AlertKind::RollbackForced => Severity::P1,
            AlertKind::RotationAbandoned
            | AlertKind::Overdue
            | AlertKind::SecretMissing
            | AlertKind::AwsUnreachable
            | AlertKind::AccountUnreachable
            | AlertKind::DepartureUnresolved
            | AlertKind::RollbackEscalated => Severity::P2,
            AlertKind::RotationScheduled
            | AlertKind::RotationCompleted
            | AlertKind::NativeScheduleDrift
            | AlertKind::ApprovalRequested
            | AlertKind::ObserveSummary
            | AlertKind::RollbackCompleted => Severity::P3,
        }
    }

    pub fn audience(self) -> Audience {
        match self {
            AlertKind::RotationScheduled
            | AlertKind::RotationCompleted
            | AlertKind::NativeScheduleDrift
            | AlertKind::RollbackCompleted => Audience::Notify,
            AlertKind::ApprovalRequested => Audience::Approvers,
            _ => Audience::Security,
        }
    }

    pub(crate) fn summary(self) -> &'static str {
        match self {
            AlertKind::RotationFailed => "Rotation failed",
            AlertKind::RotationAbandoned => "Rotation abandoned",
            AlertKind::RotationStuck => "Rotation stuck",
            AlertKind::BreachSuspected => "Credential breach suspected",
            AlertKind::DepartureSlaAtRisk => "Departure rotation SLA at risk",
            AlertKind::DepartureSlaMissed => "Departure rotation SLA missed",
            AlertKind::Overdue => "Secret overdue for rotation",
            AlertKind::RotationStorm => "Rotation storm, event rotations paused",
            AlertKind::SecretMissing => "Configured secret missing",
            AlertKind::AwsUnreachable => "AWS unreachable",
            AlertKind::AccountUnreachable => "AWS account unreachable",
            AlertKind::DependentsUnhealthy => "Dependents failing after rotation",
            AlertKind::RotationScheduled => "Rotation scheduled",
            AlertKind::RotationCompleted => "Rotation completed",
            AlertKind::NativeScheduleDrift => "Secrets Manager schedule differs from rotationd's",
            AlertKind::ApprovalRequested => "Rotation approval requested",
            AlertKind::ApprovalOverdue => "Emergency rotation still awaiting approval",
            AlertKind::StateLost => "State database lost, rotationd stopped acting",
            AlertKind::DepartureUnresolved => "Departure of a user nobody can name",
            AlertKind::ObserveSummary => "Observe mode: what rotationd would have rotated",
            AlertKind::RollbackEscalated => "Rollback refused below L3, escalated",
            AlertKind::RollbackCompleted => "AWSCURRENT is the previous version again: reload",
            AlertKind::RollbackForced => "A retired credential was put back (rollback --force)",
        }
    }

    /// The ordered steps from the Secrets Rotation Guide that apply to this kind.
    pub fn runbook(self) -> &'static [&'static str] {
        const ESCALATE: &str = "Escalate to the Security Lead immediately: rotation failed, a breach is suspected, or dependents cannot authenticate (guide: Escalation)";
        const CHECK_STAGES: &str = "Check the rotation function's four stages (createSecret, setSecret, testSecret, finishSecret) and RotationFailed events in CloudTrail";
        const VERIFY_LABELS: &str = "Confirm the labels: aws secretsmanager describe-secret --secret-id <secret> --query VersionIdsToStages (AWSCURRENT new, AWSPREVIOUS old)";
        const ROLLBACK: &str = "If the new credential causes issues, restore the previous version (L3 only): rotationd rollback --secret <secret> --ticket <INC> --reason <why> (update-secret-version-stage AWSCURRENT back to AWSPREVIOUS)";
        const RESTART: &str = "Restart dependent services to pick up the reverted credential";
        const INVESTIGATE: &str = "Investigate why the new credential failed before re-attempting";
        const EMERGENCY: &[&str] = &[
            "Rotate immediately; do not wait for a maintenance window (rotationd rotate --emergency)",
            "File or link the INC ticket (P1)",
            "Notify Security on-call: they may need to audit access logs",
            "Monitor CloudTrail for unauthorized access with the affected credential",
        ];
        match self {
            AlertKind::RotationFailed => &[ESCALATE, CHECK_STAGES, VERIFY_LABELS, INVESTIGATE],
            AlertKind::RotationAbandoned => &[
                "Someone wrote a secret version by hand during a rotation: find who in CloudTrail (PutSecretValue/UpdateSecretVersionStage)",
                VERIFY_LABELS,
                "Re-run the rotation once the secret is consistent",
            ],
            AlertKind::RotationStuck => &[
                "A previous rotation left AWSPENDING on a version without AWSCURRENT; rotationd will not call RotateSecret on top of it",
                CHECK_STAGES,
                "Finish or cancel the broken rotation (fix the rotation function, or move AWSPENDING off the version), then retry",
                ESCALATE,
            ],
            AlertKind::BreachSuspected => EMERGENCY,
            AlertKind::DepartureSlaAtRisk | AlertKind::DepartureSlaMissed => &[
                "A departed team member could still reach this secret: rotate within 24 hours of the departure",
                "Rotate now: rotationd rotate --secret <secret> --ticket <INC> --reason departure --emergency",
                ESCALATE,
            ],
            AlertKind::Overdue => &[
                "The current version is older than [policy] max_age (quarterly compliance)",
                "Plan a rotation in the next off-peak window under a CHG ticket, or rotate now with an INC ticket",
            ],
            AlertKind::RotationStorm => &[
                "More event-triggered rotations than allowed in an hour: check the event sources for a fault or an attack",
                "Queued triggers are kept; resume with rotationd resume or a config reload once understood",
                ESCALATE,
            ],
            AlertKind::SecretMissing => &[
                "A secret listed in the configuration is absent from Secrets Manager or scheduled for deletion",
                "Fix the configuration or restore the secret (aws secretsmanager restore-secret)",
            ],
            AlertKind::AwsUnreachable => &[
                "rotationd cannot reach AWS: check network, VPC endpoints, credentials and AWS health",
                "Rotations and alerts are kept and resume when AWS answers",
            ],
            AlertKind::AccountUnreachable => &[
                "rotationd cannot list the secrets of one [[account]] (in the regions named): the other accounts go on",
                "Check the account's role: its trust policy must let rotationd's principal assume it (sts:AssumeRole, session name rotationd), and its policy must grant docs/iam-policy.json",
                "Check the region is enabled in that account",
                "Its secrets are neither planned nor called missing until it answers; triggers for them are kept",
            ],
            AlertKind::DependentsUnhealthy => &[
                ESCALATE,
                "Check that dependent services can authenticate with the new credential (401/403/connection errors)",
                ROLLBACK,
                RESTART,
                INVESTIGATE,
            ],
            AlertKind::RotationScheduled => &[
                "Your service consumes this credential: make sure it re-reads AWSCURRENT and retries on authentication errors during the window",
            ],
            AlertKind::RotationCompleted => &[
                "Verify service connectivity with the new credential",
                "Watch 401/403/connection errors in CloudWatch for 15 minutes and check application logs",
            ],
            AlertKind::ApprovalRequested => &[
                "An L1/L2 operator requested a rotation (the guide: Rotate Secrets is the highest-risk action; L1 and L2 request approval)",
                "Check the ticket (CHG for planned, INC for emergency) and the reason",
                "Approve or deny from CommandBridge as an L3 other than the requester; without a decision the request closes at its deadline",
            ],
            AlertKind::ApprovalOverdue => &[
                "An emergency rotation request has waited half of its approval time",
                "An L3 must approve or deny it now from CommandBridge; a suspected compromise should not wait",
                ESCALATE,
            ],
            AlertKind::StateLost => &[
                "rotationd's state database (its history and audit log) was deleted or replaced while it ran: it stopped rotating and reacting, /metrics still answers and /readyz is 503",
                "Find out who or what removed it: the host's audit log, configuration management, cleanup jobs",
                "Restore the database (with its -wal file) from a backup and restart rotationd, or restart it with rotationd run --init to start a new history (its first audit entry records the lost chain's head)",
                ESCALATE,
            ],
            AlertKind::DepartureUnresolved => &[
                "An Identity Center user left, but the event names only a user id that neither the Identity Store nor rotationd's memory of it knows: no secret was rotated",
                "Find who it was: the IAM Identity Center console or CloudTrail (CreateUser, UpdateUser events with that user id)",
                "Rotate the secrets that person could reach within 24 hours of the departure: rotationd rotate --secret <secret> --ticket <INC> --reason departure --emergency",
                "Configure [identity_center] identity_store_id if it is missing, so that the next departure resolves",
            ],
            AlertKind::ObserveSummary => &[
                "rotationd runs in observe mode ([daemon] mode = \"observe\"): it plans, reacts and alerts, but changes nothing in Secrets Manager",
                "Read what it would have rotated and why (rotationd status shows the same per secret); a would_fail or would_stick verdict is what enforce mode would meet: fix it first (rotation function, AWSPENDING left over, tickets)",
                "The triggers queued meanwhile (queued_for_enforce) run when enforce mode starts: departures and compromises at once, planned windows still open, overdue secrets",
                "When a week of summaries reads right, set mode = \"enforce\" and reload (systemctl reload rotationd; the change is audited)",
            ],
            AlertKind::RollbackEscalated => &[
                "An L1/L2 operator asked for a rollback; the guide restricts rollback to L3 (L1/L2 must escalate), so it was refused",
                "Check the ticket and the reason with the requester: do the dependents fail with the new credential?",
                "If the rollback is needed, an L3 runs it: rotationd rollback --secret <secret> --ticket <INC> --reason <why>",
                RESTART,
            ],
            AlertKind::RollbackCompleted => &[
                "AWSCURRENT is the previous version again: reload the credential (restart or re-read the secret) in every service that consumes it",
                "Watch 401/403/connection errors until every instance uses it",
                INVESTIGATE,
            ],
            AlertKind::RollbackForced => &[
                "An L3 forced a rollback to a version that a compromise, departure or emergency rotation retired: the credential believed exposed is current again",
                "Confirm the INC ticket and the reason with the L3 who forced it",
                "Rotate again as soon as the dependents work: rotationd rotate --secret <secret> --ticket <INC> --reason <why> --emergency",
                "Monitor CloudTrail for unauthorized access with the restored credential",
                ESCALATE,
            ],
            AlertKind::NativeScheduleDrift => &[
                "Secrets Manager's own rotation schedule (RotationRules) disagrees with the TOML schedule: the secret can rotate twice, or not when planned",
                "Compare them with rotationd plan --live",
                "Set [policy] native_schedule = \"sync\" to write the TOML schedule to Secrets Manager, or \"disable\" to turn Secrets Manager's own schedule off",
            ],
        }
    }
}
