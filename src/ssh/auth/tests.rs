use super::*;

#[test]
fn step_order_puts_what_worked_first() {
    use Step::*;
    assert_eq!(
        step_order(None),
        vec![Agent, Files, KeyboardInteractive, Password]
    );
    assert_eq!(
        step_order(Some(&Worked::Password)),
        vec![Password, Agent, Files, KeyboardInteractive]
    );
    assert_eq!(
        step_order(Some(&Worked::File("/k".into()))),
        vec![Files, Agent, KeyboardInteractive, Password]
    );
}

#[test]
fn explicit_missing_identity_file_is_an_error() {
    let mut cfg = crate::ssh::test_support::config("h", 22);
    cfg.identity_files = vec!["/nonexistent/id_test".into()];
    cfg.identity_files_explicit = true;
    let e = identity_files(&cfg).unwrap_err();
    assert_eq!(
        e.to_string(),
        "identity file /nonexistent/id_test does not exist (check the IdentityFile option)"
    );
    cfg.identity_files_explicit = false;
    assert!(identity_files(&cfg).unwrap().is_empty());
}

/// The passphrase probe: offering a public key without signing tells whether the server
/// would take it, and leaves the session usable for a real attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_tells_acceptance_and_keeps_the_session_usable() {
    use crate::ssh::test_support::{keygen, Sshd};
    use crate::ssh::Connector;
    let sshd = Sshd::start();
    let cfg = sshd.config();
    let connector = Connector::new(cfg.clone());
    let clock = Arc::new(PromptClock::default());
    let (mut handle, _, _) = connector.handshake(false, &clock).await.unwrap();
    let secrets = Secrets::default();
    let mut a = Authenticator::new(&mut handle, &cfg, &secrets, &clock, vec![], false);
    let load = |p: &Path| russh::keys::load_secret_key(p, None).unwrap();
    let other = load(&keygen(sshd.dir.path(), "other", ""));
    let good = load(&sshd.client_key);
    assert!(!a.probe(other.public_key().clone()).await.unwrap());
    assert!(a.probe(good.public_key().clone()).await.unwrap());
    let key = PrivateKeyWithHashAlg::new(Arc::new(good), None);
    let user = cfg.user.clone();
    let result = a.handle.authenticate_publickey(user, key).await.unwrap();
    assert!(result.success(), "{result:?}");
}
