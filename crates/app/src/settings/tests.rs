use super::*;

fn env(pairs: &[(&str, &str)]) -> Option<config::Map<String, String>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

#[test]
fn defaults_are_safe() {
    let s = Settings::load(None, env(&[])).unwrap();
    assert_eq!(s.server.bind, "127.0.0.1:8080");
    assert_eq!(s.server.max_body_bytes, 1024 * 1024);
    for provider in payhook_domain::Provider::ALL {
        assert!(
            !s.providers.is_enabled(provider.as_str()),
            "providers are disabled by default"
        );
    }
    assert_eq!(s.database.url.expose_secret(), "sqlite://data/payhook.db");
    assert_eq!(s.store_kind().unwrap(), StoreKind::Sqlite);
    assert!(!s.fallback_log.enabled, "no fallback file unless asked for");
    assert_eq!(s.fallback_log.dir, std::path::PathBuf::from("./logs"));
    assert_eq!(s.fallback_log.name, "payhook-webhook-fallback");
    assert!(s.admin.token.is_none(), "admin API off by default");
    assert!(s.notify.url.is_none());
}

#[test]
fn environment_overrides_with_double_underscores_and_lists() {
    let s = Settings::load(
        None,
        env(&[
            ("PAYHOOK__DATABASE__URL", "postgres://u@h/db"),
            ("PAYHOOK__SERVER__MAX_BODY_BYTES", "2048"),
            ("PAYHOOK__PROVIDERS__STRIPE__ENABLED", "true"),
            ("PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS", "whsec_a,whsec_b"),
        ]),
    )
    .unwrap();
    assert_eq!(s.store_kind().unwrap(), StoreKind::Postgres);
    assert_eq!(s.server.max_body_bytes, 2048);
    // Both secrets of the comma-separated list verify.
    let options = payhook_domain::ConnectOptions {
        api_timeout: std::time::Duration::from_secs(1),
    };
    let providers = crate::startup::providers::Providers::connect(&s.providers, &options).unwrap();
    let stripe = providers.get(payhook_domain::Provider::Stripe).unwrap();
    let now = chrono::Utc::now();
    for secret in ["whsec_a", "whsec_b"] {
        let headers = vec![(
            "stripe-signature".to_owned(),
            payhook_stripe::signature_header(secret, now.timestamp(), b"{}"),
        )];
        let delivery = payhook_domain::source::Delivery {
            headers: &headers,
            query: "",
            body: b"{}",
            received_at: now,
        };
        assert_eq!(stripe.webhooks.authenticate(&delivery), Ok(()), "{secret}");
    }
}

#[test]
fn a_provider_payhook_does_not_know_is_refused() {
    let err = Settings::load(None, env(&[("PAYHOOK__PROVIDERS__PAYPAL__ENABLED", "true")])).unwrap_err();
    assert!(err.to_string().contains("providers.paypal"), "{err}");
}

#[test]
fn a_wrong_value_is_refused_with_its_key() {
    let err = Settings::load(
        None,
        env(&[
            ("PAYHOOK__PROVIDERS__STRIPE__ENABLED", "true"),
            ("PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS", "whsec_a"),
            ("PAYHOOK__PROVIDERS__STRIPE__TOLERANCE_SECS", "-1"),
        ]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("providers.stripe.tolerance_secs"), "{err}");
}

#[test]
fn the_worker_batch_size_suits_the_store_unless_set() {
    let sqlite = Settings::load(None, env(&[])).unwrap();
    assert_eq!(sqlite.worker_batch_size().unwrap(), 256);
    let postgres = Settings::load(None, env(&[("PAYHOOK__DATABASE__URL", "postgres://u@h/db")])).unwrap();
    assert_eq!(postgres.worker_batch_size().unwrap(), 512);
    let set = Settings::load(None, env(&[("PAYHOOK__WORKER__BATCH_SIZE", "100")])).unwrap();
    assert_eq!(set.worker_batch_size().unwrap(), 100);
    let zero = Settings::load(None, env(&[("PAYHOOK__WORKER__BATCH_SIZE", "0")])).unwrap_err();
    assert!(zero.to_string().contains("worker.batch_size"), "{zero}");
}

#[test]
fn the_pool_size_suits_the_store_unless_set() {
    let sqlite = Settings::load(None, env(&[])).unwrap();
    assert_eq!(sqlite.pool_size().unwrap(), 1);
    let postgres = Settings::load(None, env(&[("PAYHOOK__DATABASE__URL", "postgres://u@h/db")])).unwrap();
    assert_eq!(postgres.pool_size().unwrap(), 10);
    let set = Settings::load(None, env(&[("PAYHOOK__DATABASE__POOL_SIZE", "4")])).unwrap();
    assert_eq!(set.pool_size().unwrap(), 4);
    let zero = Settings::load(None, env(&[("PAYHOOK__DATABASE__POOL_SIZE", "0")])).unwrap_err();
    assert!(zero.to_string().contains("database.pool_size"), "{zero}");
}

#[test]
fn enabled_stripe_without_secret_is_a_start_up_error() {
    let err = Settings::load(None, env(&[("PAYHOOK__PROVIDERS__STRIPE__ENABLED", "true")])).unwrap_err();
    assert!(err.to_string().contains("providers.stripe.webhook_secrets"), "{err}");
}

#[test]
fn notify_url_without_secret_is_refused() {
    let err = Settings::load(None, env(&[("PAYHOOK__NOTIFY__URL", "https://merchant.example/hooks")])).unwrap_err();
    assert!(err.to_string().contains("notify.secret"), "{err}");
}

#[test]
fn api_keys_are_a_list_or_a_comma_separated_string_and_may_be_empty() {
    let keys = |value: &str| Settings::load(None, env(&[("PAYHOOK__API__KEYS", value)])).map(|s| s.api.keys.len());
    assert_eq!(keys("merchant_key_one_0123,merchant_key_two_0123").unwrap(), 2);
    assert_eq!(keys("").unwrap(), 0, "no keys: the merchant API is off");
    assert!(keys("short").is_err(), "keys are at least 16 characters");
    assert_eq!(Settings::load(None, None).unwrap().api.keys.len(), 0, "off by default");
}

#[test]
fn short_admin_tokens_are_refused() {
    assert!(Settings::load(None, env(&[("PAYHOOK__ADMIN__TOKEN", "short")])).is_err());
    assert!(Settings::load(None, env(&[("PAYHOOK__ADMIN__TOKEN", "a-long-enough-admin-token")])).is_ok());
}

#[test]
fn enabled_xendit_without_callback_token_is_a_start_up_error() {
    let err = Settings::load(None, env(&[("PAYHOOK__PROVIDERS__XENDIT__ENABLED", "true")])).unwrap_err();
    assert!(err.to_string().contains("providers.xendit.callback_token"), "{err}");
    let ok = Settings::load(
        None,
        env(&[
            ("PAYHOOK__PROVIDERS__XENDIT__ENABLED", "true"),
            ("PAYHOOK__PROVIDERS__XENDIT__CALLBACK_TOKEN", "tok"),
        ]),
    );
    assert!(ok.unwrap().providers.is_enabled("xendit"));
}

#[test]
fn qpay_and_junglepay_need_their_credentials_and_callback_base_url() {
    let err = Settings::load(None, env(&[("PAYHOOK__PROVIDERS__QPAY__ENABLED", "true")])).unwrap_err();
    assert!(err.to_string().contains("providers.qpay.client_id"), "{err}");
    let qpay = [
        ("PAYHOOK__PROVIDERS__QPAY__ENABLED", "true"),
        ("PAYHOOK__PROVIDERS__QPAY__CLIENT_ID", "id"),
        ("PAYHOOK__PROVIDERS__QPAY__CLIENT_SECRET", "secret"),
        ("PAYHOOK__PROVIDERS__QPAY__INVOICE_CODE", "CODE"),
    ];
    let err = Settings::load(None, env(&qpay)).unwrap_err();
    assert!(err.to_string().contains("callback_base_url"), "{err}");
    let mut complete = qpay.to_vec();
    complete.push(("PAYHOOK__PROVIDERS__QPAY__CALLBACK_BASE_URL", "https://pay.example.mn"));
    assert!(Settings::load(None, env(&complete)).is_ok());
    complete.push(("PAYHOOK__PROVIDERS__QPAY__CALLBACK_BASE_URL", "pay.example.mn"));
    assert!(Settings::load(None, env(&complete)).is_err(), "not an http(s) URL");

    let err = Settings::load(
        None,
        env(&[
            ("PAYHOOK__PROVIDERS__JUNGLEPAY__ENABLED", "true"),
            ("PAYHOOK__PROVIDERS__JUNGLEPAY__SECRET_KEY", "sk"),
        ]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("providers.junglepay"), "{err}");
}

#[test]
fn example_file_loads() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/example.toml");
    assert!(Settings::load(Some(&example), env(&[])).is_ok());
}

/// The keys of each section of a TOML text, commented-out ones included.
fn keys_by_section(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        let line = line.trim().trim_start_matches('#').trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.split_once(" = ") {
            if !key.contains(' ') && !section.is_empty() {
                keys.push((section.clone(), key.to_owned()));
            }
        }
    }
    keys
}

#[test]
fn the_example_file_lists_every_key() {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/example.toml")).unwrap();
    let listed = keys_by_section(&example);
    let mut expected = keys_by_section(DEFAULTS);
    // Each provider's keys, as its configuration type names them.
    for provider in payhook_domain::Provider::ALL {
        expected.push((format!("providers.{provider}"), "enabled".into()));
        for field in crate::startup::providers::config_fields(provider) {
            expected.push((format!("providers.{provider}"), field));
        }
    }
    let missing: Vec<String> = expected
        .iter()
        .filter(|key| !listed.contains(key))
        .map(|(section, key)| format!("{section}.{key}"))
        .collect();
    assert!(missing.is_empty(), "config/example.toml lacks {missing:?}");
}

/// `key = value` lines of a TOML text that are not commented out, by section, with
/// the value as written (trailing comment removed).
fn values_by_section(text: &str, commented: bool) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut values = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line
            .trim_start_matches('#')
            .trim()
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
        {
            section = name.to_owned();
            continue;
        }
        let line = match (commented, line.strip_prefix('#')) {
            (true, Some(rest)) => rest.trim(),
            (false, None) => line,
            _ => continue,
        };
        if let Some((key, value)) = line.split_once(" = ") {
            let value = value.split("  #").next().unwrap_or(value).trim();
            if !key.contains(' ') && !section.is_empty() {
                values.push((section.clone(), key.to_owned(), value.to_owned()));
            }
        }
    }
    values
}

#[test]
fn the_example_file_shows_the_true_defaults_and_only_known_keys() {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/example.toml")).unwrap();
    let shown = values_by_section(&example, true);
    for (section, key, default) in values_by_section(DEFAULTS, false) {
        let example_value = shown
            .iter()
            .find(|(s, k, _)| *s == section && *k == key)
            .map(|(_, _, v)| v);
        assert_eq!(example_value, Some(&default), "config/example.toml: {section}.{key}");
    }
    let sections = keys::sections();
    let providers = keys::provider_sections();
    for (section, key) in keys_by_section(&example) {
        let known = match section.strip_prefix("providers.") {
            Some(name) => providers
                .iter()
                .any(|(p, keys)| *p == name && keys.contains(&key.as_str())),
            None => sections
                .iter()
                .any(|(s, keys)| *s == section && keys.contains(&key.as_str())),
        };
        assert!(known, "config/example.toml lists {section}.{key}, which nothing reads");
    }
}

#[test]
fn every_settings_section_has_its_keys_listed() {
    keys::every_section_listed().unwrap();
    for (provider, keys) in keys::provider_sections() {
        assert!(keys.len() > 1, "{provider} declares no keys");
    }
}

fn load_file(text: &str) -> Result<Settings, SettingsError> {
    let dir = std::env::temp_dir().join(format!("payhook-settings-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("typo.toml");
    std::fs::write(&path, text).unwrap();
    let loaded = Settings::load(Some(&path), env(&[]));
    std::fs::remove_dir_all(&dir).unwrap();
    loaded
}

#[test]
fn a_misspelt_section_is_refused_naming_its_file_and_the_likely_one() {
    let err = load_file("[sever]\nbind = \"0.0.0.0:9999\"\n").unwrap_err().to_string();
    assert!(err.contains("unknown section [sever] in "), "{err}");
    assert!(err.contains("typo.toml"), "{err}");
    assert!(err.ends_with("(did you mean [server]?)"), "{err}");
}

#[test]
fn a_misspelt_key_is_refused_in_files_and_the_environment() {
    let err = load_file("[server]\nbnd = \"0.0.0.0:9999\"\n").unwrap_err().to_string();
    assert!(
        err.contains("unknown key server.bnd in ") && err.contains("typo.toml"),
        "{err}"
    );
    assert!(err.ends_with("(did you mean server.bind?)"), "{err}");

    let err = Settings::load(None, env(&[("PAYHOOK__WORKER__CONCURENCY", "4")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown key worker.concurency in the environment"),
        "{err}"
    );
    assert!(err.ends_with("(did you mean worker.concurrency?)"), "{err}");

    let err = Settings::load(None, env(&[("PAYHOOK__NOTHING__LIKE_IT", "4")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown section [nothing]") && !err.contains("did you mean"),
        "{err}"
    );
}

#[test]
fn provider_tables_are_checked_even_when_disabled() {
    let err = load_file("[providers.xendit]\ncallback_tokn = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown key providers.xendit.callback_tokn"), "{err}");
    assert!(
        err.ends_with("(did you mean providers.xendit.callback_token?)"),
        "{err}"
    );

    let err = load_file("[providers.strip]\nenabled = true\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown provider [providers.strip]"), "{err}");
    assert!(err.ends_with("(did you mean [providers.stripe]?)"), "{err}");
}

#[test]
fn the_store_location_names_host_port_and_database_but_no_credentials() {
    let at = |url: &str| {
        Settings::load(None, env(&[("PAYHOOK__DATABASE__URL", url)]))
            .unwrap()
            .store_location()
    };
    assert_eq!(
        at("postgres://payhook:s3cr@t@db.internal:6432/pay?sslmode=require"),
        "postgres db.internal:6432/pay"
    );
    assert_eq!(at("postgresql://db.internal/pay"), "postgres db.internal:5432/pay");
    assert_eq!(at("sqlite://data/payhook.db"), "sqlite data/payhook.db");
}

#[test]
fn unknown_database_scheme_is_refused() {
    assert!(Settings::load(None, env(&[("PAYHOOK__DATABASE__URL", "mysql://x")])).is_err());
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let s = Settings::load(
        None,
        env(&[
            ("PAYHOOK__DATABASE__URL", "postgres://u:hunter2@h/db"),
            ("PAYHOOK__PROVIDERS__STRIPE__ENABLED", "true"),
            ("PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS", "whsec_topsecret"),
        ]),
    )
    .unwrap();
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("whsec_topsecret"),
        "{debug}"
    );
}
