//! Unit tests of parsing, defaults, validation and error locations.

use super::*;

#[test]
fn issue_example_parses() {
    let text = r#"
domain = "example.org"
data_dir = "/var/lib/salon"
[tls]
cert = "/etc/salon/fullchain.pem"
key = "/etc/salon/privkey.pem"
[listen]
c2s = "0.0.0.0:5222"
c2s_direct_tls = "0.0.0.0:5223"
http = "0.0.0.0:5280"
[c2s]
require_encryption = true
[anonymous]
domain = "anon.example.org"
[muc]
domain = "rooms.example.org"
"#;
    let config = Config::parse(text, None).unwrap();
    assert_eq!(config.domain, "example.org");
    assert_eq!(config.anonymous_domain(), Some("anon.example.org"));
    assert_eq!(config.listen.c2s.unwrap().port(), 5222);
    assert!(config.c2s.require_encryption);
}

#[test]
fn unknown_key_names_line_and_key() {
    let text = "domain = \"example.org\"\n[c2s]\nrequire_encryptoin = false\n";
    let err = Config::parse(text, Some(Path::new("salon.toml"))).unwrap_err();
    assert_eq!(err.line, Some(3));
    assert_eq!(err.key.as_deref(), Some("c2s.require_encryptoin"));
    let shown = err.to_string();
    assert!(
        shown.starts_with("salon.toml:3: key `c2s.require_encryptoin`"),
        "{shown}"
    );
}

#[test]
fn worker_threads_default_to_one_per_core_and_are_bounded() {
    assert_eq!(Config::parse("", None).unwrap().worker_threads, 0);
    let config = Config::parse("worker_threads = 1\n", None).unwrap();
    assert_eq!(config.worker_threads, 1);
    let err = Config::parse("worker_threads = 5000\n", None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("worker_threads"));
    let err = Config::parse("worker_threads = -1\n", None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("worker_threads"));
}

#[test]
fn account_archives_are_on_by_default_and_configurable() {
    let config = Config::parse("", None).unwrap();
    assert!(config.archive.enabled);
    assert_eq!(config.archive.retention_days, 0);
    let config = Config::parse("[archive]\nenabled = false\nretention_days = 30\n", None).unwrap();
    assert!(!config.archive.enabled);
    assert_eq!(config.archive.retention_days, 30);
    assert!(config.describe().contains("archive.retention_days = 30\n"));
    let err = Config::parse("[archive]\nretention = 30\n", None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("archive.retention"));
}

#[test]
fn wrong_type_names_line_and_key() {
    let text = "domain = \"example.org\"\n[c2s]\nrequire_encryption = \"yes\"\n";
    let err = Config::parse(text, None).unwrap_err();
    assert_eq!(err.line, Some(3));
    assert_eq!(err.key.as_deref(), Some("c2s.require_encryption"));
}

#[test]
fn listeners_can_be_off_and_domains_are_normalised() {
    let text = "domain = \"Example.ORG\"\n[listen]\nc2s_direct_tls = \"off\"\nhttp = \"off\"\n";
    let config = Config::parse(text, None).unwrap();
    assert_eq!(config.domain, "example.org");
    assert!(config.listen.c2s.is_some());
    assert!(config.listen.c2s_direct_tls.is_none());
    assert!(config.listen.http.is_none());
    let text = "[listen]\nc2s = \"off\"\nc2s_direct_tls = \"off\"\n";
    let err = Config::parse(text, None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("listen"));
}

#[test]
fn trusted_proxy_ranges_match() {
    let range = IpRange::parse("10.0.0.0/8").unwrap();
    assert!(range.contains("10.1.2.3".parse().unwrap()));
    assert!(!range.contains("11.0.0.1".parse().unwrap()));
    assert!(range.contains("::ffff:10.0.0.1".parse().unwrap()));
    let single = IpRange::parse("::1").unwrap();
    assert!(single.contains("::1".parse().unwrap()));
    assert!(!single.contains("::2".parse().unwrap()));
    assert!(IpRange::parse("10.0.0.0/33").is_none());
    let err = Config::parse("[http]\ntrusted_proxies = [\"nope\"]\n", None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("http.trusted_proxies"));
}

#[test]
fn misspelt_log_level_is_refused() {
    let err = Config::parse("[log]\nlevel = \"inf\"\n", None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("log.level"));
    assert!(Config::parse("[log]\nlevel = \"info,salon_server=debug\"\n", None).is_ok());
}

#[test]
fn upload_section_defaults_and_errors() {
    let config = Config::parse("domain = \"example.org\"\n[upload]\n", None).unwrap();
    let upload = config.upload.unwrap();
    assert_eq!(upload.domain, "upload.example.org");
    assert_eq!(upload.expire_after, 7 * 86_400);
    assert_eq!(upload.anonymous.expire_after, 86_400);
    assert!(Config::parse("", None).unwrap().upload.is_none());
    assert!(Config::development().upload.is_some());
    let text = "[upload]\nallowed_types = [\"image\"]\n";
    let err = Config::parse(text, None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("upload.allowed_types"));
    assert_eq!(err.line, Some(2));
    let text = "[upload]\n[upload.anonymous]\nallowed_types = [\"x/\"]\n";
    let err = Config::parse(text, None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("upload.anonymous.allowed_types"));
    let text = "[upload]\nmax_file_sise = 3\n";
    let err = Config::parse(text, None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("upload.max_file_sise"));
    let text = "[listen]\nhttp = \"off\"\n[upload]\n";
    let err = Config::parse(text, None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("upload"));
    let text = "[muc]\ndomain = \"up.localhost\"\n[upload]\ndomain = \"up.localhost\"\n";
    let err = Config::parse(text, None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("upload.domain"));
}

#[test]
fn bad_value_names_line_and_key() {
    let text = "domain = \"example.org\"\n[listen]\nc2s = \"not an address\"\n";
    let err = Config::parse(text, None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("listen.c2s"));
    let text = "domain = \"exa mple@org\"\n";
    let err = Config::parse(text, None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("domain"));
    assert_eq!(err.line, Some(1));
    let text = "domain = \"example.org\"\n[muc]\ndomain = \"example.org\"\n";
    let err = Config::parse(text, None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("muc.domain"));
    assert_eq!(err.line, Some(3));
}

#[test]
fn pep_limits_have_defaults_and_are_configurable() {
    let config = Config::parse("", None).unwrap();
    assert_eq!(config.pep.max_items_per_node, 256);
    let config = Config::parse(
        "[pep]\nmax_item_bytes = 1000\nmax_items_per_node = 5\nmax_nodes_per_account = 7\n",
        None,
    )
    .unwrap();
    assert_eq!(config.pep.max_item_bytes, 1000);
    assert_eq!(config.pep.max_items_per_node, 5);
    assert_eq!(config.pep.max_nodes_per_account, 7);
    assert!(config
        .describe()
        .contains("pep.max_nodes_per_account = 7\n"));
    assert_eq!(config.pep.max_publish_per_minute, 120);
    let err = Config::parse("[pep]\nmax_publish_per_minute = 0\n", None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("pep.max_publish_per_minute"));
    let err = Config::parse("[pep]\nmax_nodes = 7\n", None).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("pep.max_nodes"));
}

#[test]
fn s2s_section_parses_policies_and_rejects_bad_values() {
    let text = "domain = \"salon.test\"\n[listen]\ns2s = \"127.0.0.10:5269\"\n[s2s]\ndefault_policy = \"allow_dialback\"\nblocked_domains = [\"Evil.Test\"]\ndns_timeout_seconds = 1\n[s2s.domain_policy]\n\"ejabberd.test\" = \"require_valid_certificate\"\n";
    let config = Config::parse(text, None).unwrap();
    assert_eq!(config.listen.s2s, Some("127.0.0.10:5269".parse().unwrap()));
    let s2s = config.s2s.as_ref().unwrap();
    assert_eq!(s2s.policy_for("evil.test"), S2sPolicy::Refuse);
    assert_eq!(
        s2s.policy_for("ejabberd.test"),
        S2sPolicy::RequireValidCertificate
    );
    assert_eq!(s2s.policy_for("other.test"), S2sPolicy::AllowDialback);
    assert!(config
        .describe()
        .contains("s2s.default_policy = \"allow_dialback\""));
    let bad = "[s2s]\ndefault_policy = \"trust_everyone\"\n";
    assert!(Config::parse(bad, None).is_err());
    let bad = "[s2s]\ndns_timeout_seconds = 0\n";
    let error = Config::parse(bad, None).unwrap_err();
    assert_eq!(error.key.as_deref(), Some("s2s.dns_timeout_seconds"));
    assert_eq!(s2s.max_domain_pairs_per_stream, 100);
    let bad = "[s2s]\nmax_domain_pairs_per_stream = 0\n";
    let error = Config::parse(bad, None).unwrap_err();
    assert_eq!(
        error.key.as_deref(),
        Some("s2s.max_domain_pairs_per_stream")
    );
    assert!(Config::parse("domain = \"a.test\"\n", None)
        .unwrap()
        .s2s
        .is_none());
}
