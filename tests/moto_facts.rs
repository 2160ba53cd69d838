//! Pins the moto 5.2.5 Secrets Manager behaviours rotationd's design
//! depends on (see docs/moto-findings.md). All tests share one server; each uses its
//! own name prefix so they can run in parallel.
mod common;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::{
    Filter, FilterNameStringType, RotationRulesType, SortOrderType, Tag,
};
use common::moto;
use std::collections::HashMap;

fn client() -> Client {
    Client::new(&moto::sdk_config(&moto::shared().endpoint()))
}

async fn create(sm: &Client, name: &str) -> String {
    sm.create_secret()
        .name(name)
        .secret_string("v1")
        .send()
        .await
        .unwrap()
        .version_id
        .unwrap()
}

async fn stages(sm: &Client, name: &str) -> HashMap<String, Vec<String>> {
    sm.describe_secret()
        .secret_id(name)
        .send()
        .await
        .unwrap()
        .version_ids_to_stages
        .unwrap_or_default()
}

fn rules(days: i64) -> RotationRulesType {
    RotationRulesType::builder()
        .automatically_after_days(days)
        .build()
}

fn token(c: char) -> String {
    std::iter::repeat_n(c, 36).collect()
}

fn err_text<E>(e: &aws_sdk_secretsmanager::error::SdkError<E>) -> String
where
    E: std::fmt::Debug + aws_sdk_secretsmanager::error::ProvideErrorMetadata,
{
    let svc = e.as_service_error().expect("service error");
    format!(
        "{}: {}",
        svc.code().unwrap_or("?"),
        svc.message().unwrap_or("?")
    )
}

async fn list_all(
    sm: &Client,
    filters: Vec<Filter>,
    planned: Option<bool>,
) -> Vec<aws_sdk_secretsmanager::types::SecretListEntry> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let r = sm
            .list_secrets()
            .max_results(100)
            .set_filters(Some(filters.clone()))
            .set_include_planned_deletion(planned)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        out.extend(r.secret_list.unwrap_or_default());
        match r.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    out
}

fn name_filter(prefix: &str) -> Filter {
    Filter::builder()
        .key(FilterNameStringType::Name)
        .values(prefix)
        .build()
}

// a. CreateSecret -> DescribeSecret
#[tokio::test]
async fn a_describe_after_create() {
    let sm = client();
    let name = moto::unique_name("a-desc");
    let v0 = create(&sm, &name).await;
    let d = sm.describe_secret().secret_id(&name).send().await.unwrap();
    println!("a describe: {d:?}");
    assert_eq!(
        d.version_ids_to_stages.unwrap(),
        HashMap::from([(v0, vec!["AWSCURRENT".to_string()])])
    );
    assert_eq!(
        d.rotation_enabled, None,
        "RotationEnabled absent when never configured"
    );
    assert_eq!(d.rotation_rules, None);
    assert_eq!(d.rotation_lambda_arn, None);
    assert_eq!(d.last_rotated_date, None);
    assert_eq!(d.next_rotation_date, None);
    assert!(d.last_changed_date.is_some());
    assert!(d.created_date.is_some());
    assert_eq!(d.deleted_date, None);
}

// a. ListSecrets paging over 250 secrets, entry shape.
#[tokio::test]
async fn a_list_paging_250() {
    let sm = client();
    let prefix = moto::unique_name("a-page");
    for i in 0..250 {
        create(&sm, &format!("{prefix}/{i:03}")).await;
    }
    // Rotate one so it has LastRotatedDate.
    sm.rotate_secret()
        .secret_id(format!("{prefix}/000"))
        .rotation_rules(rules(90))
        .send()
        .await
        .unwrap();

    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let r = sm
            .list_secrets()
            .max_results(100)
            .filters(name_filter(&prefix))
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        pages.push((r.secret_list().len(), r.next_token.clone()));
        match r.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    println!("a pages (len, next_token): {pages:?}");
    assert_eq!(
        pages,
        vec![
            (100, Some("100".into())),
            (100, Some("200".into())),
            (50, None)
        ]
    );

    let all = list_all(&sm, vec![name_filter(&prefix)], None).await;
    assert_eq!(all.len(), 250);
    for e in &all {
        let vs = e
            .secret_versions_to_stages
            .as_ref()
            .expect("SecretVersionsToStages in every entry");
        assert!(vs.values().any(|s| s.iter().any(|l| l == "AWSCURRENT")));
        assert!(e.created_date.is_some() && e.last_changed_date.is_some());
        assert_eq!(e.deleted_date, None);
    }
    let rotated = all
        .iter()
        .find(|e| e.name() == Some(&format!("{prefix}/000")))
        .unwrap();
    println!("a rotated entry: {rotated:?}");
    assert!(rotated.last_rotated_date.is_some());
    assert_eq!(rotated.rotation_enabled, Some(true));
    assert!(rotated.next_rotation_date.is_some());
    let plain = all
        .iter()
        .find(|e| e.name() == Some(&format!("{prefix}/001")))
        .unwrap();
    println!("a plain entry: {plain:?}");
    assert_eq!(plain.last_rotated_date, None);
    assert_eq!(plain.rotation_enabled, None);
}

// a. Filters name / tag-key / tag-value / all / negation; i. SortOrder.
#[tokio::test]
async fn a_list_filters_and_sort() {
    let sm = client();
    let p = moto::unique_name("a-flt");
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    sm.create_secret()
        .name(format!("{p}/alpha-1"))
        .secret_string("x")
        .tags(tag(&format!("{p}team"), "red"))
        .send()
        .await
        .unwrap();
    sm.create_secret()
        .name(format!("{p}/alpha-2"))
        .secret_string("x")
        .tags(tag("env", &format!("{p}prod")))
        .send()
        .await
        .unwrap();
    sm.create_secret()
        .name(format!("{p}/beta-1"))
        .secret_string("x")
        .send()
        .await
        .unwrap();
    sm.create_secret()
        .name(format!("x{p}/alpha-3"))
        .secret_string("x")
        .send()
        .await
        .unwrap();

    let names = |v: Vec<aws_sdk_secretsmanager::types::SecretListEntry>| {
        let mut n: Vec<String> = v
            .into_iter()
            .map(|e| e.name.unwrap().replace(&p, "P"))
            .collect();
        n.sort();
        n
    };
    let f = |k: FilterNameStringType, v: &str| Filter::builder().key(k).values(v).build();

    // name is a case-sensitive PREFIX match (not substring).
    assert_eq!(
        names(
            list_all(
                &sm,
                vec![f(FilterNameStringType::Name, &format!("{p}/alpha"))],
                None
            )
            .await
        ),
        ["P/alpha-1", "P/alpha-2"]
    );
    assert_eq!(
        names(
            list_all(
                &sm,
                vec![f(
                    FilterNameStringType::Name,
                    &format!("{}/alpha", p.to_uppercase())
                )],
                None
            )
            .await
        ),
        Vec::<String>::new()
    );
    // tag-key / tag-value are prefix matches too.
    assert_eq!(
        names(
            list_all(
                &sm,
                vec![f(FilterNameStringType::TagKey, &format!("{p}te"))],
                None
            )
            .await
        ),
        ["P/alpha-1"]
    );
    assert_eq!(
        names(
            list_all(
                &sm,
                vec![f(FilterNameStringType::TagValue, &format!("{p}pr"))],
                None
            )
            .await
        ),
        ["P/alpha-2"]
    );
    // Two filters AND; two values in one filter OR.
    assert_eq!(
        names(
            list_all(
                &sm,
                vec![
                    f(FilterNameStringType::Name, &p),
                    f(FilterNameStringType::TagKey, &format!("{p}team"))
                ],
                None
            )
            .await
        ),
        ["P/alpha-1"]
    );
    let or = Filter::builder()
        .key(FilterNameStringType::Name)
        .values(format!("{p}/beta"))
        .values(format!("x{p}"))
        .build();
    assert_eq!(
        names(list_all(&sm, vec![or], None).await),
        ["P/beta-1", "xP/alpha-3"]
    );
    // Negation works.
    let neg = list_all(
        &sm,
        vec![f(FilterNameStringType::Name, &format!("!{p}/alpha"))],
        None,
    )
    .await;
    assert!(neg.iter().any(|e| e.name() == Some(&format!("{p}/beta-1"))));
    assert!(
        !neg.iter()
            .any(|e| e.name() == Some(&format!("{p}/alpha-1")))
    );

    // i. SortOrder is accepted but ignored: insertion order both ways.
    let asc = sm
        .list_secrets()
        .filters(f(FilterNameStringType::Name, &p))
        .sort_order(SortOrderType::Asc)
        .send()
        .await
        .unwrap();
    let desc = sm
        .list_secrets()
        .filters(f(FilterNameStringType::Name, &p))
        .sort_order(SortOrderType::Desc)
        .send()
        .await
        .unwrap();
    let n =
        |r: &aws_sdk_secretsmanager::operation::list_secrets::ListSecretsOutput| -> Vec<String> {
            r.secret_list()
                .iter()
                .map(|e| e.name().unwrap().replace(&p, "P"))
                .collect()
        };
    println!("i asc={:?} desc={:?}", n(&asc), n(&desc));
    assert_eq!(n(&asc), ["P/alpha-1", "P/alpha-2", "P/beta-1"]);
    assert_eq!(n(&desc), n(&asc), "moto ignores SortOrder");
}

// a/f/i. Deleted secrets: ListSecrets only with IncludePlannedDeletion; DeletedDate.
#[tokio::test]
async fn f_deleted_secret() {
    let sm = client();
    let p = moto::unique_name("f-del");
    let name = format!("{p}/gone");
    create(&sm, &name).await;
    create(&sm, &format!("{p}/kept")).await;
    let del = sm
        .delete_secret()
        .secret_id(&name)
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
    println!("f delete: {del:?}");
    let d = sm.describe_secret().secret_id(&name).send().await.unwrap();
    println!("f describe deleted: {d:?}");
    let deleted = d.deleted_date.expect("DescribeSecret shows DeletedDate");
    // moto's DeletedDate is the SCHEDULED deletion time (now + window), not the request time.
    let created = d.created_date.unwrap();
    let diff = deleted.secs() - created.secs();
    assert!(
        (7 * 86400 - 5..=7 * 86400 + 5).contains(&diff),
        "DeletedDate - CreatedDate = {diff}s"
    );

    assert_eq!(list_all(&sm, vec![name_filter(&p)], None).await.len(), 1);
    assert_eq!(
        list_all(&sm, vec![name_filter(&p)], Some(false))
            .await
            .len(),
        1
    );
    let with = list_all(&sm, vec![name_filter(&p)], Some(true)).await;
    assert_eq!(with.len(), 2);
    let entry = with.iter().find(|e| e.name() == Some(&name)).unwrap();
    assert!(
        entry.deleted_date.is_some(),
        "ListSecrets entry reports DeletedDate"
    );

    let e = sm
        .rotate_secret()
        .secret_id(&name)
        .rotation_rules(rules(90))
        .send()
        .await
        .unwrap_err();
    let t = err_text(&e);
    println!("f rotate deleted: {t}");
    assert!(t.starts_with("InvalidRequestException:"), "{t}");
    assert!(t.contains("currently marked deleted"), "{t}");

    let e = sm
        .rotate_secret()
        .secret_id(format!("{p}/never"))
        .send()
        .await
        .unwrap_err();
    let t = err_text(&e);
    println!("f rotate missing: {t}");
    assert_eq!(
        t,
        "ResourceNotFoundException: Secrets Manager can't find the specified secret."
    );
}

// b. RotateSecret without Lambda.
#[tokio::test]
async fn b_rotate_without_lambda() {
    let sm = client();
    let name = moto::unique_name("b-rot");
    let v0 = create(&sm, &name).await;
    let tok = token('t');
    let r = sm
        .rotate_secret()
        .secret_id(&name)
        .client_request_token(&tok)
        .rotation_rules(rules(90))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.version_id(),
        Some(tok.as_str()),
        "new VersionId == ClientRequestToken"
    );
    let d = sm.describe_secret().secret_id(&name).send().await.unwrap();
    println!("b after rotate: {d:?}");
    assert_eq!(
        d.version_ids_to_stages.clone().unwrap(),
        HashMap::from([
            (v0.clone(), vec!["AWSPREVIOUS".to_string()]),
            (tok.clone(), vec!["AWSCURRENT".to_string()])
        ])
    );
    assert_eq!(d.rotation_enabled, Some(true));
    assert_eq!(
        d.rotation_lambda_arn.as_deref(),
        Some(""),
        "moto reports an EMPTY RotationLambdaARN"
    );
    assert_eq!(
        d.rotation_rules.as_ref().unwrap().automatically_after_days,
        Some(90)
    );
    assert!(d.last_rotated_date.is_some());
    let next = d.next_rotation_date.unwrap().secs() - d.last_rotated_date.unwrap().secs();
    assert!((90 * 86400 - 5..=90 * 86400 + 5).contains(&next));

    // Same token again: "idempotent" (same VersionId back, no error) but moto strips AWSPREVIOUS.
    let r2 = sm
        .rotate_secret()
        .secret_id(&name)
        .client_request_token(&tok)
        .rotation_rules(rules(90))
        .send()
        .await
        .unwrap();
    assert_eq!(r2.version_id(), Some(tok.as_str()));
    let s = stages(&sm, &name).await;
    println!("b after same-token retry: {s:?}");
    assert_eq!(
        s,
        HashMap::from([(v0, vec![]), (tok, vec!["AWSCURRENT".to_string()])])
    );
}

// b. RotateSecret on a secret without rotation configured and no rules in the call.
#[tokio::test]
async fn b_rotate_unconfigured() {
    let sm = client();
    let name = moto::unique_name("b-unconf");
    let v0 = create(&sm, &name).await;
    let r = sm.rotate_secret().secret_id(&name).send().await.unwrap();
    let v1 = r.version_id.unwrap();
    let d = sm.describe_secret().secret_id(&name).send().await.unwrap();
    println!("b unconfigured after rotate: {d:?}");
    assert_eq!(d.rotation_enabled, Some(false));
    assert_eq!(
        d.rotation_rules.as_ref().unwrap().automatically_after_days,
        Some(0)
    );
    assert!(d.last_rotated_date.is_some());
    assert_eq!(d.next_rotation_date, None);
    assert_eq!(
        d.version_ids_to_stages.unwrap(),
        HashMap::from([
            (v0, vec!["AWSPREVIOUS".to_string()]),
            (v1, vec!["AWSCURRENT".to_string()])
        ])
    );
}

// b. ScheduleExpression and RotateImmediately=false are ignored by moto.
#[tokio::test]
async fn b_schedule_expression_ignored() {
    let sm = client();
    let name = moto::unique_name("b-cron");
    create(&sm, &name).await;
    let rr = RotationRulesType::builder()
        .schedule_expression("cron(0 4 ? * SUN *)")
        .duration("4h")
        .build();
    sm.rotate_secret()
        .secret_id(&name)
        .rotation_rules(rr)
        .rotate_immediately(false)
        .send()
        .await
        .unwrap();
    let d = sm.describe_secret().secret_id(&name).send().await.unwrap();
    println!("b cron: {d:?}");
    assert_eq!(d.rotation_enabled, Some(false));
    let rr = d.rotation_rules.unwrap();
    assert_eq!(rr.schedule_expression, None);
    assert_eq!(rr.duration, None);
    assert!(
        d.last_rotated_date.is_some(),
        "rotated although RotateImmediately=false"
    );
}

// c. Non-existent Lambda.
#[tokio::test]
async fn c_rotate_missing_lambda() {
    let sm = client();
    let name = moto::unique_name("c-lambda");
    let v0 = create(&sm, &name).await;
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:nope";
    let e = sm
        .rotate_secret()
        .secret_id(&name)
        .rotation_lambda_arn(arn)
        .rotation_rules(rules(30))
        .send()
        .await
        .unwrap_err();
    let t = err_text(&e);
    println!("c: {t}");
    assert_eq!(
        t,
        format!("ResourceNotFoundException: Resource not found for ARN '{arn}'.")
    );
    // ...but moto has already mutated the secret: rotation configured and an AWSPENDING version left behind.
    let d = sm.describe_secret().secret_id(&name).send().await.unwrap();
    println!("c after failed rotate: {d:?}");
    assert_eq!(d.rotation_enabled, Some(true));
    assert_eq!(d.rotation_lambda_arn.as_deref(), Some(arn));
    assert_eq!(d.last_rotated_date, None);
    let s = d.version_ids_to_stages.unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[&v0], vec!["AWSCURRENT".to_string()]);
    assert!(
        s.iter()
            .any(|(k, v)| *k != v0 && *v == vec!["AWSPENDING".to_string()])
    );
    // A later RotateSecret WITHOUT the ARN succeeds and clears the stored Lambda ARN.
    sm.rotate_secret().secret_id(&name).send().await.unwrap();
    let d = sm.describe_secret().secret_id(&name).send().await.unwrap();
    println!("c after second rotate without ARN: {d:?}");
    assert_eq!(d.rotation_lambda_arn.as_deref(), Some(""));
}

// d. ListSecretVersionIds.
#[tokio::test]
async fn d_list_version_ids() {
    let sm = client();
    let name = moto::unique_name("d-ver");
    let v0 = create(&sm, &name).await;
    sm.rotate_secret()
        .secret_id(&name)
        .rotation_rules(rules(90))
        .send()
        .await
        .unwrap();
    sm.rotate_secret()
        .secret_id(&name)
        .rotation_rules(rules(90))
        .send()
        .await
        .unwrap(); // v0 now has no label
    for inc in [None, Some(false), Some(true)] {
        let r = sm
            .list_secret_version_ids()
            .secret_id(&name)
            .set_include_deprecated(inc)
            .send()
            .await
            .unwrap();
        println!("d include_deprecated={inc:?}: {r:?}");
        assert_eq!(
            r.versions().len(),
            3,
            "deprecated (label-less) versions are listed regardless of IncludeDeprecated"
        );
        assert!(
            r.versions()
                .iter()
                .all(|v| v.created_date.is_some() && v.last_accessed_date.is_some())
        );
        assert!(
            r.versions()
                .iter()
                .any(|v| v.version_id() == Some(&v0) && v.version_stages().is_empty())
        );
        assert_eq!(
            r.next_token(),
            Some(""),
            "NextToken is an empty string, not absent"
        );
        assert_eq!(r.arn(), Some(name.as_str()), "moto puts the NAME in ARN");
    }
    // The SDK paginator must terminate on NextToken "".
    let pages = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sm.list_secret_version_ids()
            .secret_id(&name)
            .into_paginator()
            .send()
            .collect::<Vec<_>>(),
    )
    .await
    .expect("paginator stops on empty NextToken");
    assert_eq!(pages.len(), 1);
}

// e. A "stuck" rotation state built by test setup.
#[tokio::test]
async fn e_stuck_pending() {
    let sm = client();
    // A rotation whose function does not exist: RotateSecret fails, and moto leaves the
    // new version (the request token) labelled AWSPENDING only, as a function that died
    // after createSecret would. This is how rotationd's tests build a stuck secret: no
    // secret value is written.
    let name = moto::unique_name("e-stuck");
    let v0 = create(&sm, &name).await;
    let pend = token('p');
    let e = sm
        .rotate_secret()
        .secret_id(&name)
        .client_request_token(&pend)
        .rotation_lambda_arn("arn:aws:lambda:us-east-1:123456789012:function:died")
        .send()
        .await
        .unwrap_err();
    assert!(
        err_text(&e).starts_with("ResourceNotFoundException"),
        "{}",
        err_text(&e)
    );
    let s = stages(&sm, &name).await;
    println!("e stuck: {s:?}");
    assert_eq!(
        s,
        HashMap::from([
            (v0.clone(), vec!["AWSCURRENT".into()]),
            (pend.clone(), vec!["AWSPENDING".into()])
        ])
    );

    // UpdateSecretVersionStage cannot create a version.
    let e = sm
        .update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSPENDING")
        .move_to_version_id(token('z'))
        .remove_from_version_id(&pend)
        .send()
        .await
        .unwrap_err();
    println!("e move to unknown version: {}", err_text(&e));
    assert!(err_text(&e).starts_with("InvalidParameterException: Not a valid version"));

    // moto does NOT refuse RotateSecret here (AWS would); it silently drops AWSPENDING.
    let r = sm
        .rotate_secret()
        .secret_id(&name)
        .client_request_token(token('r'))
        .rotation_rules(rules(90))
        .send()
        .await
        .unwrap();
    let s = stages(&sm, &name).await;
    println!("e after rotate on stuck: {s:?}");
    assert_eq!(
        s,
        HashMap::from([
            (v0, vec!["AWSPREVIOUS".into()]),
            (pend, vec![]),
            (r.version_id.unwrap(), vec!["AWSCURRENT".into()])
        ])
    );

    // Inverted check: moto refuses when AWSPENDING sits on the AWSCURRENT version (AWS treats that as finished).
    let name3 = moto::unique_name("e-same");
    let x0 = create(&sm, &name3).await;
    sm.update_secret_version_stage()
        .secret_id(&name3)
        .version_stage("AWSPENDING")
        .move_to_version_id(&x0)
        .send()
        .await
        .unwrap();
    let e = sm
        .rotate_secret()
        .secret_id(&name3)
        .rotation_rules(rules(90))
        .send()
        .await
        .unwrap_err();
    println!("e pending==current: {}", err_text(&e));
    assert_eq!(
        err_text(&e),
        "InvalidRequestException: Previous rotation request is still in progress."
    );
}

// g. Moving AWSCURRENT back.
#[tokio::test]
async fn g_move_current_back() {
    let sm = client();
    let name = moto::unique_name("g-back");
    let v0 = create(&sm, &name).await;
    let v1 = sm
        .rotate_secret()
        .secret_id(&name)
        .rotation_rules(rules(90))
        .send()
        .await
        .unwrap()
        .version_id
        .unwrap();
    sm.update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&v0)
        .remove_from_version_id(&v1)
        .send()
        .await
        .unwrap();
    let s = stages(&sm, &name).await;
    println!("g: {s:?}");
    assert_eq!(
        s,
        HashMap::from([
            (v0.clone(), vec!["AWSCURRENT".into()]),
            (v1.clone(), vec!["AWSPREVIOUS".into()])
        ])
    );
    // Without RemoveFromVersionId moto refuses, as AWS does.
    let e = sm
        .update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&v1)
        .send()
        .await
        .unwrap_err();
    println!("g no RemoveFromVersionId: {}", err_text(&e));
    assert!(err_text(&e).starts_with(
        "InvalidParameterException: The parameter RemoveFromVersionId can't be empty"
    ));
}

/// What a rotation function's own calls do on moto (tests/rotation_host relies on it):
/// createSecret's PutSecretValue with AWSPENDING, then finishSecret's
/// UpdateSecretVersionStage. AWSPENDING stays on the promoted version (AWS documents that
/// it may, or may be removed), AWSPREVIOUS follows AWSCURRENT, and a later PutSecretValue
/// with AWSPENDING takes the label from it. GetSecretValue without a stage does NOT
/// answer AWSCURRENT after the move: moto keeps a default version of its own.
#[tokio::test]
async fn j_a_function_s_staged_writes() {
    let sm = client();
    let name = moto::unique_name("facts/function");
    let first = create(&sm, &name).await;
    let pending = token('p');
    sm.put_secret_value()
        .secret_id(&name)
        .client_request_token(&pending)
        .secret_string("v2")
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    let s = stages(&sm, &name).await;
    assert_eq!(s[&first], ["AWSCURRENT"]);
    assert_eq!(s[&pending], ["AWSPENDING"]);
    sm.update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&pending)
        .remove_from_version_id(&first)
        .send()
        .await
        .unwrap();
    let s = stages(&sm, &name).await;
    assert_eq!(s[&first], ["AWSPREVIOUS"]);
    let mut promoted = s[&pending].clone();
    promoted.sort();
    assert_eq!(promoted, ["AWSCURRENT", "AWSPENDING"]);
    // The quirk: no stage named means moto's own default version, here the old one.
    let unnamed = sm.get_secret_value().secret_id(&name).send().await.unwrap();
    assert_eq!(unnamed.version_id(), Some(first.as_str()));
    let current = sm
        .get_secret_value()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    assert_eq!(current.version_id(), Some(pending.as_str()));
    // The next createSecret takes AWSPENDING off the current version.
    let next = token('q');
    sm.put_secret_value()
        .secret_id(&name)
        .client_request_token(&next)
        .secret_string("v3")
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    let s = stages(&sm, &name).await;
    assert_eq!(s[&pending], ["AWSCURRENT"]);
    assert_eq!(s[&next], ["AWSPENDING"]);
}

// f. CloudWatch Logs FilterLogEvents, behind `[[dependent]] auth_error_pattern`: moto 5.2.5
// matches a quoted term as CloudWatch Logs does, and gets `?` alternatives wrong (a line
// matching none of them is returned). rotationd therefore matches each returned line
// again itself (`filter_pattern`, unit-tested there); this pins the server's side.
#[tokio::test]
async fn f_filter_log_events_quoted_terms_work_and_question_mark_alternatives_over_match() {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto::sdk_config(&moto::shared().endpoint()));
    let group = format!("/facts/{}", moto::unique_name("logs").replace('/', "-"));
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("s1")
        .send()
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let lines = [
        "FATAL: password authentication failed for user \"svc\"",
        "GET /orders 200 12ms",
        "GET /orders 401 3ms",
    ];
    let mut put = logs
        .put_log_events()
        .log_group_name(&group)
        .log_stream_name("s1");
    for (i, line) in lines.iter().enumerate() {
        put = put.log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now + i as i64)
                .message(*line)
                .build()
                .unwrap(),
        );
    }
    put.send().await.unwrap();
    let matched = |pattern: &'static str| {
        let logs = logs.clone();
        let group = group.clone();
        async move {
            let out = logs
                .filter_log_events()
                .log_group_name(&group)
                .filter_pattern(pattern)
                .start_time(now - 60_000)
                .end_time(now + 60_000)
                .send()
                .await
                .unwrap();
            out.events()
                .iter()
                .filter_map(|e| e.message().map(str::to_string))
                .collect::<Vec<_>>()
        }
    };
    // A quoted phrase: exactly the line that contains it.
    assert_eq!(matched("\"authentication failed\"").await, [lines[0]]);
    // `?` alternatives: AWS returns the two lines with either phrase; moto returns the
    // 200 line as well.
    let either = matched("?\"authentication failed\" ?\" 401 \"").await;
    assert!(either.contains(&lines[0].to_string()), "{either:?}");
    assert!(
        either.contains(&lines[1].to_string()),
        "moto no longer over-matches `?` alternatives: update docs/moto-findings.md; {either:?}"
    );
    // What rotationd counts of moto's answer: only the two real matches.
    let pattern: rotationd::filter_pattern::FilterPattern =
        "?\"authentication failed\" ?\" 401 \"".parse().unwrap();
    let counted: Vec<&String> = either.iter().filter(|l| pattern.matches(l)).collect();
    assert_eq!(counted, [lines[0], lines[2]]);
}

/// What the CLI's approval policy and its tests rely on (docs/moto-findings.md, G2): the
/// user of an access key, path included; a role's session without the role's path; and
/// moto's default identity for a key it never issued.
#[tokio::test]
async fn sts_get_caller_identity_names_the_user_of_the_key_and_the_role_of_a_session() {
    let m = moto::shared();
    let user = moto::unique_name("facts-alice");
    let alice = common::iam::user(m, &user, "/ops/");
    assert_eq!(
        alice.arn,
        format!("arn:aws:iam::123456789012:user/ops/{user}")
    );
    assert_eq!(common::iam::caller(m, &alice).await, alice.arn);
    let role = moto::unique_name("FactsLead");
    let session = common::iam::session(
        m,
        &format!("arn:aws:iam::123456789012:role/team/{role}"),
        "alice-sess",
    )
    .await;
    assert_eq!(
        session.arn,
        format!("arn:aws:sts::123456789012:assumed-role/{role}/alice-sess")
    );
    let other = common::iam::session(m, "arn:aws:iam::111111111111:role/X", "s3").await;
    assert_eq!(other.arn, "arn:aws:sts::111111111111:assumed-role/X/s3");
    // The harness's own key, never issued: moto's default identity (no authentication).
    let unknown = common::iam::Keys {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
        arn: String::new(),
    };
    assert_eq!(
        common::iam::caller(m, &unknown).await,
        "arn:aws:sts::123456789012:user/moto"
    );
    // moto checks no signature: the key id alone names the user, whatever the secret.
    let wrong_secret = common::iam::Keys {
        secret_access_key: "not-the-secret".into(),
        ..alice.clone()
    };
    assert_eq!(common::iam::caller(m, &wrong_secret).await, alice.arn);
}
