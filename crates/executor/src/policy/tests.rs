use super::*;

fn rules(allow: &[&str], deny: &[&str]) -> HostRules {
    let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    HostRules::parse(&v(allow), &v(deny)).expect("rules parse")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

fn url(text: &str) -> reqwest::Url {
    reqwest::Url::parse(text).expect("url")
}

/// The refusal message of a URL, or "ok".
fn verdict(r: &HostRules, u: &str) -> String {
    match r.check_url(&url(u), false) {
        Ok(()) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn default_allows_public_loopback_and_private_addresses() {
    let r = HostRules::default();
    assert!(r.check_name("example.com", false).is_ok());
    for a in [
        "10.0.0.1",
        "127.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "::1",
        "93.184.216.34",
        "100.100.100.100",
        "fd00::1",
    ] {
        assert!(r.check_ip("x", ip(a)).is_ok(), "{a}");
    }
}

#[test]
fn deny_wins_and_allow_restricts() {
    let r = rules(
        &["127.0.0.0/8", "*.example.com"],
        &["127.0.0.2", "bad.example.com"],
    );
    assert!(r.check_name("127.0.0.1", false).is_ok());
    assert!(r.check_name("127.0.0.2", false).is_err());
    assert!(r.check_name("10.0.0.1", false).is_err());
    assert!(r.check_name("bad.example.com", false).is_err());
    assert!(r.check_ip("api.example.com", ip("93.184.216.34")).is_ok());
    assert!(r.check_ip("other.org", ip("93.184.216.34")).is_err());
    let r = rules(&[], &["10.0.0.0/8, 192.168.0.0/16", "::1/128"]);
    assert!(r.check_name("10.9.9.9", false).is_err());
    assert!(r.check_name("[::1]", false).is_err());
    assert!(r.check_name("192.169.0.1", false).is_ok());
    assert!(HostRules::parse(&["10.0.0.0/99".into()], &[]).is_err());
    assert!(HostRules::parse(&["nonsense/8".into()], &[]).is_err());
}

#[test]
fn refusals_name_the_host_and_the_rule() {
    let r = rules(&[], &["127.0.0.0/8", "*.internal.example"]);
    assert_eq!(
        verdict(&r, "http://127.0.0.2:8080/x?token=secret"),
        "`127.0.0.2` is denied by the server's request policy (deny rule `127.0.0.0/8`)"
    );
    assert_eq!(
        verdict(&r, "https://db.internal.example/"),
        "`db.internal.example` is denied by the server's request policy (deny rule `*.internal.example`)"
    );
    assert_eq!(
        r.check_ip("db.example.com", ip("127.0.0.9"))
            .map_err(|e| e.at_redirect().to_string()),
        Err("a redirect to `db.example.com` (127.0.0.9) is denied by the server's request policy (deny rule `127.0.0.0/8`)".into())
    );
    let r = rules(&["10.0.0.0/8"], &[]);
    assert_eq!(
        r.check_ip("example.com", ip("93.184.216.34"))
            .map_err(|e| e.to_string()),
        Err("`example.com` (93.184.216.34) is not in the server's request allow list".into())
    );
    let meta = verdict(
        &HostRules::default(),
        "http://169.254.169.254/latest/meta-data/?x=1",
    );
    assert!(meta.starts_with("`169.254.169.254` is refused by the server's request policy: the cloud metadata endpoint"), "{meta}");
    assert!(
        meta.contains(
            "(rule `169.254.169.254`), refused by default unless --request-allow names it"
        ),
        "{meta}"
    );
    assert!(!meta.contains("latest") && !meta.contains("x=1"), "{meta}");
}

#[test]
fn link_local_metadata_and_unspecified_are_refused_by_default() {
    let r = HostRules::default();
    let cases = [
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254",
        ),
        ("http://169.254.1.1/", "169.254.0.0/16"),
        ("http://[fe80::1]/", "fe80::/10"),
        ("http://[febf::1]/", "fe80::/10"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254"),
        ("http://100.100.100.200/", "100.100.100.200"),
        ("http://0.0.0.0:8080/", "0.0.0.0/8"),
        ("http://0.1.2.3/", "0.0.0.0/8"),
        ("http://[::]:8080/", "`::`"),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "metadata.google.internal",
        ),
        (
            "http://METADATA.google.internal./",
            "metadata.google.internal",
        ),
        // IPv4-mapped IPv6 forms and other spellings of an IPv4 address.
        ("http://[::ffff:169.254.169.254]/", "169.254.169.254"),
        ("http://[::ffff:a9fe:a9fe]/", "169.254.169.254"),
        ("http://[::ffff:0.0.0.0]/", "0.0.0.0/8"),
        ("http://2852039166/", "169.254.169.254"),
        ("http://0xa9.0xfe.0xa9.0xfe/", "169.254.169.254"),
        ("http://169.254.43518/", "169.254.169.254"),
    ];
    for (u, rule) in cases {
        let v = verdict(&r, u);
        assert!(
            v.contains("refused by default") && v.contains(rule),
            "{u}: {v}"
        );
    }
    // Neighbours stay allowed.
    for u in [
        "http://169.253.255.255/",
        "http://[fec0::1]/",
        "http://[fd00:ec2::253]/",
        "http://100.100.100.199/",
        "http://1.0.0.0/",
        "http://[::1]/",
        "http://metadata.google.internal.example.com/",
    ] {
        assert_eq!(verdict(&r, u), "ok", "{u}");
    }
    // A name resolving to a refused address is refused at that address.
    let e = r
        .check_ip("evil.example", ip("169.254.169.254"))
        .map_err(|e| e.to_string());
    assert!(
        matches!(&e, Err(m) if m.starts_with("`evil.example` (169.254.169.254) is refused")),
        "{e:?}"
    );
    assert!(r.check_ip("x", ip("::ffff:169.254.169.254")).is_err());
}

#[test]
fn an_allow_entry_naming_a_refused_destination_lifts_the_refusal() {
    // Named exactly: allowed.
    let r = rules(&["169.254.169.254"], &[]);
    assert_eq!(
        verdict(&r, "http://169.254.169.254/latest/meta-data/"),
        "ok"
    );
    assert_eq!(verdict(&r, "http://[::ffff:169.254.169.254]/"), "ok");
    // Only what is named: other link-local addresses are still refused by
    // default, and anything else is outside the allow list.
    assert!(verdict(&r, "http://169.254.1.1/").contains("refused by default"));
    assert!(verdict(&r, "http://10.0.0.1/").contains("allow list"));

    // The link-local network lifts link-local, not the metadata address.
    let r = rules(&["169.254.0.0/16"], &[]);
    assert_eq!(verdict(&r, "http://169.254.1.1/"), "ok");
    assert!(verdict(&r, "http://169.254.169.254/").contains("cloud metadata"));

    // Broad entries name nothing.
    let r = rules(&["0.0.0.0/0", "::/0"], &[]);
    assert_eq!(verdict(&r, "http://93.184.216.34/"), "ok");
    assert!(verdict(&r, "http://169.254.169.254/").contains("refused by default"));
    assert!(verdict(&r, "http://0.0.0.0/").contains("refused by default"));
    assert!(verdict(&r, "http://[fe80::1]/").contains("refused by default"));
    let r = rules(&["0.0.0.0/0", "169.254.169.254"], &[]);
    assert_eq!(verdict(&r, "http://169.254.169.254/"), "ok");
    assert_eq!(verdict(&r, "http://93.184.216.34/"), "ok");
    let r = rules(&["::ffff:169.254.169.254"], &[]);
    assert_eq!(verdict(&r, "http://169.254.169.254/"), "ok");

    // Names: only the exact name lifts a refused name, and only the name.
    let r = rules(&["*.google.internal"], &[]);
    assert!(verdict(&r, "http://metadata.google.internal/").contains("refused by default"));
    let r = rules(&["metadata.google.internal"], &[]);
    assert_eq!(verdict(&r, "http://metadata.google.internal/"), "ok");
    assert!(r
        .check_ip("metadata.google.internal", ip("169.254.169.254"))
        .is_err());
    let r = rules(&["metadata.google.internal", "169.254.169.254"], &[]);
    assert!(r
        .check_ip("metadata.google.internal", ip("169.254.169.254"))
        .is_ok());

    // Deny still wins over a named allow entry.
    let r = rules(&["169.254.169.254"], &["169.254.0.0/16"]);
    assert!(verdict(&r, "http://169.254.169.254/").contains("deny rule `169.254.0.0/16`"));
}

#[test]
fn mapped_addresses_meet_ipv4_rules() {
    let r = rules(&[], &["127.0.0.2", "::ffff:10.0.0.0/104"]);
    assert!(verdict(&r, "http://[::ffff:127.0.0.2]:81/").contains("deny rule `127.0.0.2`"));
    assert!(r.check_ip("x", ip("::ffff:127.0.0.2")).is_err());
    assert!(r.check_ip("x", ip("10.1.2.3")).is_err());
    assert!(r.check_ip("x", ip("::ffff:10.1.2.3")).is_err());
    assert!(r.check_ip("x", ip("127.0.0.1")).is_ok());
    let r = rules(&["127.0.0.1"], &[]);
    assert!(r.check_ip("x", ip("::ffff:127.0.0.1")).is_ok());
}

#[test]
fn through_a_proxy_names_are_judged_by_name() {
    let r = rules(&["*.example.com", "10.0.0.0/8"], &[]);
    let by_name = |u: &str| r.check_url(&url(u), true).map_err(|e| e.to_string());
    assert!(by_name("https://api.example.com/").is_ok());
    assert!(by_name("http://10.1.1.1/").is_ok());
    assert_eq!(
        by_name("https://other.org/"),
        Err("`other.org` is not in the server's request allow list".into())
    );
    // Without a proxy the name waits for its addresses.
    assert!(r.check_url(&url("https://other.org/"), false).is_ok());
    let r = HostRules::default();
    assert!(r
        .check_url(&url("http://metadata.google.internal/"), true)
        .is_err());
}

#[test]
fn proxy_urls_are_shown_without_user_info() {
    let p = RequestProxy::parse("http://user:s3cret@proxy.internal:3128").expect("parses");
    assert_eq!(p.to_string(), "http://proxy.internal:3128");
    assert_eq!(format!("{p:?}"), "RequestProxy(http://proxy.internal:3128)");
    let e = RequestProxy::parse("socks5://user:s3cret@proxy:1080").expect_err("refused");
    assert!(
        !e.contains("s3cret") && e.contains("socks5://proxy:1080"),
        "{e}"
    );
    let e = RequestProxy::parse("http://user:s3cret@proxy:1/path?k=v").expect_err("refused");
    assert!(!e.contains("s3cret") && !e.contains("k=v"), "{e}");
    let e = RequestProxy::parse("not a url s3cret").expect_err("refused");
    assert!(!e.contains("s3cret"), "{e}");
}

#[test]
fn the_address_connected_to_is_checked_unless_a_proxy_connects() {
    let peer = |a: &str| Some(a.parse::<std::net::SocketAddr>().expect("addr"));
    let direct = Outbound::new(rules(&[], &["127.0.0.2"]), None).expect("client");
    let e = direct
        .check_peer(&url("http://db.example/x?t=1"), peer("127.0.0.2:80"))
        .map_err(|e| e.to_string());
    assert_eq!(
        e,
        Err("`db.example` (127.0.0.2) is denied by the server's request policy (deny rule `127.0.0.2`)".into())
    );
    assert!(direct
        .check_peer(
            &url("http://db.example/"),
            peer("[::ffff:169.254.169.254]:80")
        )
        .is_err());
    assert!(direct
        .check_peer(&url("http://db.example/"), peer("127.0.0.1:80"))
        .is_ok());
    let proxy = RequestProxy::parse("http://127.0.0.2:3128").expect("proxy");
    let proxied = Outbound::new(rules(&[], &["127.0.0.2"]), Some(&proxy)).expect("client");
    assert!(proxied
        .check_peer(&url("http://db.example/"), peer("127.0.0.2:3128"))
        .is_ok());
    assert!(proxied.check_url(&url("http://127.0.0.2/")).is_err());
}
