//! The store contract's subscription cases (see [`crate::contract`]).

use crate::contract::Store;
use chrono::{DateTime, Duration, TimeZone, Utc};
use payhook_domain::ports::StoreError;
use payhook_domain::{
    Currency, Idempotency, Interval, Money, NewPayment, NewSubscription, PaymentId, Plan, PlanId, Provider,
    ProviderStamp, Publication, Subscription, SubscriptionFilter, SubscriptionHistoryEntry, SubscriptionId,
    SubscriptionOpened, SubscriptionSave, SubscriptionStatus,
};
use std::sync::Arc;

fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).single().unwrap()
}

async fn plan<S: Store>(store: &S, code: &str) -> Plan {
    let plan = Plan {
        id: PlanId::from_uuid(uuid::Uuid::new_v4()),
        code: code.into(),
        name: "Pro".into(),
        amount: Money::new(9_900, Currency::parse("IDR").unwrap()).unwrap(),
        interval: Interval::Month,
        interval_count: 1,
        trial_days: 0,
        stripe_price_id: None,
        active: true,
        created_at: t0(),
    };
    store.create_plan(&plan).await.unwrap();
    plan
}

fn subscription(plan: &Plan, customer: &str, at: DateTime<Utc>) -> Subscription {
    Subscription {
        id: SubscriptionId::from_uuid(uuid::Uuid::new_v4()),
        plan: plan.clone(),
        provider: Provider::Xendit,
        account: String::new(),
        provider_ref: None,
        customer_ref: customer.into(),
        customer_email: Some("c@example.com".into()),
        status: SubscriptionStatus::Pending,
        anchor: None,
        periods: 0,
        current_period_start: None,
        current_period_end: None,
        cancel_at_period_end: false,
        canceled_at: None,
        metadata: serde_json::json!({ "k": "v" }),
        checkout_url: None,
        provider_stamp: None,
        renewal_notified: None,
        created_at: at,
        updated_at: at,
        version: 1,
    }
}

fn opened(new: &NewSubscription) -> NewSubscription {
    new.clone()
}

async fn open<S: Store>(store: &S, new: NewSubscription) -> Subscription {
    match store.open_subscription(&new).await.unwrap() {
        SubscriptionOpened::New(s) => s,
        other => panic!("not new: {other:?}"),
    }
}

/// A subscription is stored whole and read back; a repeated idempotency key answers
/// the first with its request's fingerprint; parallel adoptions of one Stripe
/// subscription make one row.
pub async fn opens_one_subscription_per_key_and_per_provider_ref<S: Store>(store: Arc<S>) {
    let pro = plan(&*store, "pro").await;
    let first = NewSubscription {
        subscription: subscription(&pro, "user-1", t0()),
        idempotency: Some(Idempotency {
            key: "key-1".into(),
            fingerprint: "fp-1".into(),
        }),
        next_due_at: Some(t0() + Duration::minutes(10)),
    };
    let stored = open(&*store, opened(&first)).await;
    assert_eq!(
        store.subscription(stored.id).await.unwrap(),
        Some(first.subscription.clone())
    );
    let again = NewSubscription {
        subscription: subscription(&pro, "user-1", t0() + Duration::seconds(1)),
        ..first.clone()
    };
    match store.open_subscription(&again).await.unwrap() {
        SubscriptionOpened::Existing {
            subscription,
            fingerprint,
        } => {
            assert_eq!(subscription.id, first.subscription.id);
            assert_eq!(fingerprint.as_deref(), Some("fp-1"));
        }
        other => panic!("a second subscription for one key: {other:?}"),
    }
    assert_eq!(store.subscription(again.subscription.id).await.unwrap(), None);

    // Ten events adopting `sub_1` at once: one row, and every one of them gets it.
    let adopt = |n: i64| {
        let mut s = subscription(&pro, "cus_1", t0() + Duration::seconds(n));
        s.provider = Provider::Stripe;
        s.account = "acct_1".into();
        s.provider_ref = Some("sub_1".into());
        NewSubscription {
            subscription: s,
            idempotency: None,
            next_due_at: None,
        }
    };
    let tasks: Vec<_> = (0..10)
        .map(|n| {
            let store = store.clone();
            let new = adopt(n);
            tokio::spawn(async move { store.open_subscription(&new).await })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(match task.await.unwrap().unwrap() {
            SubscriptionOpened::New(s) | SubscriptionOpened::Existing { subscription: s, .. } => s.id,
        });
    }
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 1, "parallel adoptions made several subscriptions");
    let found = store
        .subscription_by_provider_ref(Provider::Stripe, "acct_1", "sub_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, ids[0]);
    assert_eq!(
        store
            .subscription_by_provider_ref(Provider::Stripe, "acct_2", "sub_1")
            .await
            .unwrap(),
        None,
        "another account's subscription"
    );
}

/// A save applies only at the version it was computed from, writes its history and
/// its domain events in the same transaction, and keeps the provider's stamp.
pub async fn saves_a_subscription_under_its_version_with_history_and_events<S: Store>(store: Arc<S>) {
    let pro = plan(&*store, "pro").await;
    let stored = open(
        &*store,
        NewSubscription {
            subscription: subscription(&pro, "user-1", t0()),
            idempotency: None,
            next_due_at: None,
        },
    )
    .await;
    let at = t0() + Duration::hours(1);
    let mut next = stored.clone();
    next.status = SubscriptionStatus::Active;
    next.anchor = Some(at);
    next.periods = 1;
    next.current_period_start = Some(at);
    next.current_period_end = Some(at + Duration::days(31));
    next.provider_stamp = Some(ProviderStamp {
        created: 1_800_003_600,
        rank: 2,
    });
    next.renewal_notified = Some("renewal-2".into());
    next.updated_at = at;
    let save = SubscriptionSave {
        subscription: next.clone(),
        expected_version: 1,
        history: vec![SubscriptionHistoryEntry {
            from_status: SubscriptionStatus::Pending,
            to_status: SubscriptionStatus::Active,
            applied: true,
            reason: "payment paid".into(),
            at,
        }],
        publications: vec![Publication {
            topic: "subscription.activated".into(),
            payload: next.event_payload(),
        }],
        next_due_at: Some(at + Duration::days(28)),
    };
    store.save_subscription(&save).await.unwrap();
    let read = store.subscription(stored.id).await.unwrap().unwrap();
    assert_eq!(
        read,
        Subscription {
            version: 2,
            ..next.clone()
        }
    );
    assert!(matches!(
        store.save_subscription(&save).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.subscription_history(stored.id).await.unwrap(), save.history);
    let published = store
        .claim_unpublished(at + Duration::days(1), 10, at + Duration::days(2))
        .await
        .unwrap();
    assert_eq!(
        published.iter().map(|m| m.topic.as_str()).collect::<Vec<_>>(),
        ["subscription.activated"],
        "exactly once: the refused save wrote nothing"
    );
    // Not due before its time; due then.
    assert!(store
        .claim_due_subscriptions(at + Duration::days(27), 10, at + Duration::days(30))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .claim_due_subscriptions(at + Duration::days(28), 10, at + Duration::days(30))
            .await
            .unwrap(),
        vec![stored.id]
    );
}

/// Due subscriptions are claimed once until their lease runs out; parallel claims
/// never take one twice; scheduling moves or clears the due time.
pub async fn claims_due_subscriptions_once_until_the_lease_runs_out<S: Store>(store: Arc<S>) {
    let pro = plan(&*store, "pro").await;
    let mut due = Vec::new();
    for n in 0..20 {
        let s = open(
            &*store,
            NewSubscription {
                subscription: subscription(&pro, &format!("user-{n}"), t0()),
                idempotency: None,
                next_due_at: Some(t0() + Duration::seconds(n)),
            },
        )
        .await;
        due.push(s.id);
    }
    let later = open(
        &*store,
        NewSubscription {
            subscription: subscription(&pro, "later", t0()),
            idempotency: None,
            next_due_at: Some(t0() + Duration::days(1)),
        },
    )
    .await;
    let now = t0() + Duration::minutes(1);
    let lease = now + Duration::minutes(5);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_due_subscriptions(now, 6, lease).await.unwrap() })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = claimed.iter().collect();
    assert_eq!(unique.len(), claimed.len(), "a subscription claimed twice");
    assert!(!claimed.contains(&later.id));
    let rest = store.claim_due_subscriptions(now, 100, lease).await.unwrap();
    assert_eq!(claimed.len() + rest.len(), 20);
    assert!(
        store.claim_due_subscriptions(now, 100, lease).await.unwrap().is_empty(),
        "leased"
    );
    assert_eq!(
        store
            .claim_due_subscriptions(lease, 100, lease + Duration::minutes(5))
            .await
            .unwrap()
            .len(),
        20
    );
    store.schedule_subscription(due[0], None).await.unwrap();
    store.schedule_subscription(due[1], Some(t0())).await.unwrap();
    assert_eq!(
        store.claim_due_subscriptions(lease, 100, lease).await.unwrap(),
        vec![due[1]]
    );
}

/// A payment becomes a subscription's once (a second link is refused), and listing
/// filters by customer, status and plan, newest first, a page at a time; a plan keeps
/// the first Stripe Price recorded.
pub async fn links_payments_and_lists_subscriptions<S: Store>(store: Arc<S>) {
    let pro = plan(&*store, "pro").await;
    let basic = plan(&*store, "basic").await;
    let mut ids = Vec::new();
    for (n, (customer, plan)) in [("alice", &pro), ("bob", &pro), ("alice", &basic)]
        .into_iter()
        .enumerate()
    {
        let s = open(
            &*store,
            NewSubscription {
                subscription: subscription(plan, customer, t0() + Duration::seconds(n as i64)),
                idempotency: None,
                next_due_at: None,
            },
        )
        .await;
        ids.push(s.id);
    }
    let payment = store
        .create_payment(&NewPayment {
            account: String::new(),
            id: PaymentId::from_uuid(uuid::Uuid::new_v4()),
            provider: Provider::Xendit,
            provider_ref: Some("inv_1".into()),
            merchant_ref: None,
            amount: pro.amount,
            customer_email: None,
            description: None,
            metadata: serde_json::json!({}),
            created_at: t0(),
            client_token_hash: None,
            callback_token_hash: None,
            idempotency: None,
            next_reconcile_at: None,
        })
        .await
        .unwrap();
    store.link_payment(payment.id, ids[0]).await.unwrap();
    store.link_payment(payment.id, ids[1]).await.unwrap();
    let linked = store.subscription_payments(ids[0]).await.unwrap();
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0].subscription_id, Some(ids[0]));
    assert!(store.subscription_payments(ids[1]).await.unwrap().is_empty());

    let list = |filter: SubscriptionFilter| {
        let store = store.clone();
        async move {
            store
                .list_subscriptions(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        }
    };
    let all = SubscriptionFilter {
        limit: 10,
        ..Default::default()
    };
    assert_eq!(list(all.clone()).await, vec![ids[2], ids[1], ids[0]]);
    assert_eq!(
        list(SubscriptionFilter {
            customer_ref: Some("alice".into()),
            ..all.clone()
        })
        .await,
        vec![ids[2], ids[0]]
    );
    assert_eq!(
        list(SubscriptionFilter {
            plan: Some(pro.id),
            ..all.clone()
        })
        .await,
        vec![ids[1], ids[0]]
    );
    assert!(list(SubscriptionFilter {
        status: Some(SubscriptionStatus::Active),
        ..all.clone()
    })
    .await
    .is_empty());
    let first_page = store
        .list_subscriptions(&SubscriptionFilter {
            limit: 2,
            ..all.clone()
        })
        .await
        .unwrap();
    let last = first_page.last().unwrap();
    assert_eq!(
        list(SubscriptionFilter {
            after: Some((last.created_at, last.id)),
            ..all
        })
        .await,
        vec![ids[0]]
    );

    let priced = store.set_stripe_price(pro.id, "price_first").await.unwrap().unwrap();
    assert_eq!(priced.stripe_price_id.as_deref(), Some("price_first"));
    let again = store.set_stripe_price(pro.id, "price_second").await.unwrap().unwrap();
    assert_eq!(again.stripe_price_id.as_deref(), Some("price_first"));
}
