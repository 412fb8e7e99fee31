use super::*;
use crate::Currency;
use chrono::TimeZone;
use uuid::Uuid;

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 10, 0, 0).unwrap()
}

fn plan(interval: Interval, count: u32) -> Plan {
    Plan {
        id: PlanId::from_uuid(Uuid::nil()),
        code: "pro".into(),
        name: "Pro".into(),
        amount: Money::new(9_900, Currency::parse("USD").unwrap()).unwrap(),
        interval,
        interval_count: count,
        trial_days: 14,
        stripe_price_id: None,
        active: true,
        created_at: at(2026, 1, 1),
    }
}

fn subscription(status: SubscriptionStatus) -> Subscription {
    Subscription {
        id: SubscriptionId::from_uuid(Uuid::nil()),
        plan: plan(Interval::Month, 1),
        provider: Provider::Xendit,
        account: String::new(),
        provider_ref: None,
        customer_ref: "user-1".into(),
        customer_email: None,
        status,
        anchor: None,
        periods: 0,
        current_period_start: None,
        current_period_end: None,
        cancel_at_period_end: false,
        canceled_at: None,
        metadata: serde_json::json!({}),
        checkout_url: None,
        provider_stamp: None,
        renewal_notified: None,
        created_at: at(2026, 1, 1),
        updated_at: at(2026, 1, 1),
        version: 1,
    }
}

/// Active from 31 January, as the first payment made it.
fn active_from_31_january() -> Subscription {
    let s = subscription(SubscriptionStatus::Pending);
    s.apply(
        &SubscriptionChange::Paid {
            paid_at: at(2026, 1, 31),
        },
        "evt_1",
        at(2026, 1, 31),
    )
    .subscription
}

#[test]
fn every_pair_of_statuses_follows_the_state_machine() {
    use SubscriptionStatus::*;
    let allowed = [
        (Pending, Trialing),
        (Pending, Active),
        (Pending, Canceled),
        (Pending, Expired),
        (Trialing, Active),
        (Trialing, PastDue),
        (Trialing, Canceled),
        (Trialing, Expired),
        (Active, PastDue),
        (Active, Canceled),
        (Active, Expired),
        (PastDue, Active),
        (PastDue, Canceled),
        (PastDue, Expired),
        (Expired, Active),
    ];
    for from in SubscriptionStatus::ALL {
        for to in SubscriptionStatus::ALL {
            assert_eq!(from.can_move_to(to), allowed.contains(&(from, to)), "{from} -> {to}");
        }
    }
    assert!(
        SubscriptionStatus::ALL.iter().all(|s| !Canceled.can_move_to(*s)),
        "canceled is final"
    );
}

#[test]
fn monthly_periods_keep_the_anchor_day_or_the_months_last_day() {
    let p = plan(Interval::Month, 1);
    let anchor = at(2026, 1, 31);
    let ends: Vec<_> = (1..=4).map(|n| p.period_end(anchor, n).unwrap()).collect();
    assert_eq!(
        ends,
        [at(2026, 2, 28), at(2026, 3, 31), at(2026, 4, 30), at(2026, 5, 31)]
    );
    let leap = p.period_end(at(2028, 1, 31), 1).unwrap();
    assert_eq!(leap, at(2028, 2, 29));
    assert_eq!(
        plan(Interval::Month, 3).period_end(anchor, 1),
        Some(at(2026, 4, 30)),
        "quarterly"
    );
    assert_eq!(
        plan(Interval::Year, 1).period_end(at(2028, 2, 29), 1),
        Some(at(2029, 2, 28))
    );
    assert_eq!(plan(Interval::Week, 2).period_end(anchor, 1), Some(at(2026, 2, 14)));
    assert_eq!(plan(Interval::Day, 30).period_end(anchor, 2), Some(at(2026, 4, 1)));
}

#[test]
fn the_first_payment_activates_it_for_one_period_and_publishes_activated() {
    let s = subscription(SubscriptionStatus::Pending);
    let applied = s.apply(
        &SubscriptionChange::Paid {
            paid_at: at(2026, 1, 31),
        },
        "evt_1",
        at(2026, 1, 31),
    );
    let next = &applied.subscription;
    assert_eq!(next.status, SubscriptionStatus::Active);
    assert_eq!(
        (next.current_period_start, next.current_period_end, next.periods),
        (Some(at(2026, 1, 31)), Some(at(2026, 2, 28)), 1)
    );
    assert_eq!(applied.publications[0].topic, "subscription.activated");
    assert_eq!(applied.history.len(), 1);
    assert!(applied.history[0].applied);
}

#[test]
fn an_early_renewal_extends_from_the_old_end_and_a_late_one_keeps_the_calendar() {
    let s = active_from_31_january();
    // Paid five days early: the period runs from 28 February to 31 March, nothing lost.
    let renewed = s.apply(
        &SubscriptionChange::Paid {
            paid_at: at(2026, 2, 23),
        },
        "evt_2",
        at(2026, 2, 23),
    );
    let r = &renewed.subscription;
    assert_eq!(
        (r.current_period_start, r.current_period_end),
        (Some(at(2026, 2, 28)), Some(at(2026, 3, 31)))
    );
    assert_eq!(r.status, SubscriptionStatus::Active);
    assert_eq!(renewed.publications[0].topic, "subscription.renewed");
    // Lapsed, then paid within the grace time: active again, the next period as planned.
    let lapsed = r
        .apply(&SubscriptionChange::PeriodLapsed, "scheduler", at(2026, 3, 31))
        .subscription;
    assert_eq!(lapsed.status, SubscriptionStatus::PastDue);
    let late = lapsed.apply(
        &SubscriptionChange::Paid {
            paid_at: at(2026, 4, 2),
        },
        "evt_3",
        at(2026, 4, 2),
    );
    assert_eq!(late.subscription.status, SubscriptionStatus::Active);
    assert_eq!(late.subscription.current_period_end, Some(at(2026, 4, 30)));
    let topics: Vec<_> = late.publications.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(topics, ["subscription.activated", "subscription.renewed"]);
}

#[test]
fn past_due_only_after_the_period_and_expired_after_the_grace_and_a_late_payment_restarts_it() {
    let s = active_from_31_january();
    let early = s.apply(&SubscriptionChange::PeriodLapsed, "scheduler", at(2026, 2, 27));
    assert!(!early.applied, "the period has not ended");
    assert!(!early.history[0].applied);
    let lapsed = s
        .apply(&SubscriptionChange::PeriodLapsed, "scheduler", at(2026, 2, 28))
        .subscription;
    let expired = lapsed.apply(&SubscriptionChange::GraceOver, "scheduler", at(2026, 3, 3));
    assert_eq!(expired.subscription.status, SubscriptionStatus::Expired);
    assert_eq!(expired.publications[0].topic, "subscription.expired");
    let back = expired
        .subscription
        .apply(
            &SubscriptionChange::Paid {
                paid_at: at(2026, 3, 10),
            },
            "evt_9",
            at(2026, 3, 10),
        )
        .subscription;
    assert_eq!(back.status, SubscriptionStatus::Active);
    assert_eq!(
        (back.current_period_start, back.current_period_end),
        (Some(at(2026, 3, 10)), Some(at(2026, 4, 10))),
        "from the payment"
    );
}

#[test]
fn cancel_at_period_end_keeps_access_until_the_end_and_now_ends_it_now() {
    let s = active_from_31_january();
    let later = s.apply(
        &SubscriptionChange::Cancel { at_period_end: true },
        "canceled_by_merchant",
        at(2026, 2, 10),
    );
    let l = &later.subscription;
    assert_eq!((l.status, l.cancel_at_period_end), (SubscriptionStatus::Active, true));
    assert!(later.publications.is_empty());
    let too_soon = l.apply(&SubscriptionChange::PeriodEndedCanceled, "scheduler", at(2026, 2, 27));
    assert!(!too_soon.applied);
    let ended = l.apply(&SubscriptionChange::PeriodEndedCanceled, "scheduler", at(2026, 2, 28));
    assert_eq!(ended.subscription.status, SubscriptionStatus::Canceled);
    assert_eq!(ended.subscription.canceled_at, Some(at(2026, 2, 28)));
    let now = s.apply(
        &SubscriptionChange::Cancel { at_period_end: false },
        "canceled_by_merchant",
        at(2026, 2, 10),
    );
    assert_eq!(now.subscription.status, SubscriptionStatus::Canceled);
    assert_eq!(now.publications[0].topic, "subscription.canceled");
    // Canceled is final: a payment after it is recorded, not applied.
    let paid = now.subscription.apply(
        &SubscriptionChange::Paid {
            paid_at: at(2026, 2, 11),
        },
        "evt_x",
        at(2026, 2, 11),
    );
    assert!(!paid.applied);
    assert_eq!(paid.subscription.status, SubscriptionStatus::Canceled);
    assert_eq!(paid.history.len(), 1);
}

#[test]
fn a_refunded_subscription_payment_ends_access_now() {
    let s = active_from_31_january();
    let refunded = s.apply(&SubscriptionChange::PaymentRefunded, "evt_refund", at(2026, 2, 5));
    assert_eq!(refunded.subscription.status, SubscriptionStatus::Expired);
    assert_eq!(refunded.subscription.current_period_end, Some(at(2026, 2, 5)));
    assert!(!refunded.subscription.status.grants_access());
}

#[test]
fn a_trial_gives_access_for_the_plans_trial_days_then_the_first_payment_activates_it() {
    let s = subscription(SubscriptionStatus::Pending);
    let trial = s
        .apply(&SubscriptionChange::StartTrial, "created", at(2026, 1, 1))
        .subscription;
    assert_eq!(trial.status, SubscriptionStatus::Trialing);
    assert_eq!(trial.current_period_end, Some(at(2026, 1, 15)));
    assert!(trial.status.grants_access());
    let paid = trial.apply(
        &SubscriptionChange::Paid {
            paid_at: at(2026, 1, 15),
        },
        "evt_1",
        at(2026, 1, 15),
    );
    assert_eq!(paid.subscription.status, SubscriptionStatus::Active);
    assert_eq!(paid.subscription.current_period_end, Some(at(2026, 2, 15)));
}

#[test]
fn a_late_incomplete_after_active_is_recorded_not_applied() {
    let s = subscription(SubscriptionStatus::Pending);
    let says = |status: SubscriptionStatus, end: Option<DateTime<Utc>>| SubscriptionChange::ProviderSays {
        stamp: ProviderStamp {
            created: 1_767_225_600,
            rank: status.rank(),
        },
        status,
        period_start: Some(at(2026, 1, 1)),
        period_end: end,
        cancel_at_period_end: Some(false),
    };
    let active = s
        .apply(
            &says(SubscriptionStatus::Active, Some(at(2026, 2, 1))),
            "evt_updated",
            at(2026, 1, 1),
        )
        .subscription;
    assert_eq!(active.status, SubscriptionStatus::Active);
    // `customer.subscription.created` (incomplete) arrives after: Stripe's `incomplete`
    // is payhook's `pending`, which nothing moves back to.
    let late = active.apply(
        &says(SubscriptionStatus::Pending, Some(at(2026, 2, 1))),
        "evt_created",
        at(2026, 1, 1),
    );
    assert!(!late.applied);
    assert_eq!(late.subscription, active);
    assert_eq!(late.history.len(), 1);
    // Stripe renews it: the same status, a later period.
    let renewed = active.apply(
        &SubscriptionChange::ProviderSays {
            stamp: ProviderStamp {
                created: 1_769_904_000,
                rank: SubscriptionStatus::Active.rank(),
            },
            status: SubscriptionStatus::Active,
            period_start: Some(at(2026, 2, 1)),
            period_end: Some(at(2026, 3, 1)),
            cancel_at_period_end: Some(false),
        },
        "evt_renewed",
        at(2026, 2, 1),
    );
    assert_eq!(renewed.publications[0].topic, "subscription.renewed");
    assert_eq!(renewed.subscription.current_period_end, Some(at(2026, 3, 1)));
    assert_eq!(renewed.subscription.periods, 2);
}

/// Stripe's words are ordered by their event's second, then by status order: an older
/// second loses even when its move would be allowed, and within one second the later
/// status wins whatever order the two arrive in.
#[test]
fn provider_words_are_ordered_by_second_then_status_never_by_arrival() {
    let says = |created: i64, status: SubscriptionStatus| SubscriptionChange::ProviderSays {
        stamp: ProviderStamp {
            created,
            rank: status.rank(),
        },
        status,
        period_start: Some(at(2026, 1, 1)),
        period_end: Some(at(2026, 2, 1)),
        cancel_at_period_end: Some(false),
    };
    let start = subscription(SubscriptionStatus::Pending);
    let active = start
        .apply(&says(100, SubscriptionStatus::Active), "evt_a", at(2026, 1, 1))
        .subscription;
    // `past_due` of an earlier second arrives late: allowed by §3, but older.
    let late = active.apply(&says(90, SubscriptionStatus::PastDue), "evt_b", at(2026, 1, 1));
    assert!(!late.applied);
    assert_eq!(late.subscription.status, SubscriptionStatus::Active);
    // The same second, both orders: `past_due` (later in a subscription's life) wins.
    let one = active
        .apply(&says(100, SubscriptionStatus::PastDue), "evt_c", at(2026, 1, 1))
        .subscription;
    assert_eq!(one.status, SubscriptionStatus::PastDue);
    // The other order, from a subscription active since an earlier second.
    let earlier = start
        .apply(&says(50, SubscriptionStatus::Active), "evt_0", at(2026, 1, 1))
        .subscription;
    let past_due_first = earlier
        .apply(&says(100, SubscriptionStatus::PastDue), "evt_c", at(2026, 1, 1))
        .subscription;
    assert_eq!(past_due_first.status, SubscriptionStatus::PastDue);
    let then_active = past_due_first.apply(&says(100, SubscriptionStatus::Active), "evt_a", at(2026, 1, 1));
    assert!(!then_active.applied);
    assert_eq!(then_active.subscription.status, one.status);
    // A word repeated (the same event again) changes nothing.
    let again = one.apply(&says(100, SubscriptionStatus::PastDue), "evt_c", at(2026, 1, 1));
    assert!(!again.applied);
}

/// Paid during a trial: the first period starts when the trial ends, not at payment.
#[test]
fn paying_during_a_trial_keeps_the_trial_days() {
    let mut s = subscription(SubscriptionStatus::Pending);
    s.plan.trial_days = 14;
    let trialing = s
        .apply(&SubscriptionChange::StartTrial, "created", at(2026, 1, 1))
        .subscription;
    assert_eq!(trialing.current_period_end, Some(at(2026, 1, 15)));
    let paid = trialing
        .apply(
            &SubscriptionChange::Paid {
                paid_at: at(2026, 1, 10),
            },
            "payment",
            at(2026, 1, 10),
        )
        .subscription;
    assert_eq!(paid.status, SubscriptionStatus::Active);
    assert_eq!(paid.current_period_start, Some(at(2026, 1, 15)));
    assert_eq!(paid.current_period_end, Some(at(2026, 2, 15)));
}
