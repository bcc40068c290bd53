//! A real SMTP server for the e-mail channel's tests: Debian's aiosmtpd (`python3-aiosmtpd`)
//! on loopback, with TLS from a throwaway CA (rcgen) and AUTH LOGIN/PLAIN against one user.
//! Modes: `smtps` (TLS from the first byte), `starttls` (STARTTLS required before AUTH), and
//! `plain` (no TLS offered at all). Every message, and every AUTH or MAIL the server saw, is
//! written as a JSON line to a file the test reads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "me@example.org";
pub const PASSWORD: &str = "smtp-pw-secret-9q";

const SERVER: &str = r#"
import asyncio, json, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

mode, port, cert, key, out, user, password = sys.argv[1:8]

def tls(server, session):
    # STARTTLS sets session.ssl; implicit TLS shows on the transport only.
    return session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None

def log(entry):
    with open(out, "a") as f:
        f.write(json.dumps(entry) + "\n")

class Handler:
    async def handle_MAIL(self, server, session, envelope, address, options):
        log({"event": "mail", "tls": tls(server, session)})
        envelope.mail_from = address
        return "250 OK"
    async def handle_DATA(self, server, session, envelope):
        log({"event": "data", "from": envelope.mail_from, "to": envelope.rcpt_tos,
             "data": envelope.content.decode("utf-8", "replace"), "tls": tls(server, session)})
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
        and auth_data.password.decode() == password
    log({"event": "auth", "ok": ok, "tls": tls(server, session)})
    # handled=False: aiosmtpd then answers 535 itself (its default assumes the hook did).
    return AuthResult(success=ok, handled=False)

ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
kwargs = dict(hostname="127.0.0.1", port=int(port), authenticator=authenticator,
              auth_require_tls=True, ready_timeout=10)
if mode == "smtps":
    kwargs["ssl_context"] = ctx
    # aiosmtpd tracks only STARTTLS as "TLS" for this rule; here every byte is TLS already.
    kwargs["auth_require_tls"] = False
elif mode == "starttls":
    kwargs["tls_context"] = ctx
    kwargs["require_starttls"] = True
class Quiet(Controller):
    def _trigger_server(self):
        pass  # its self-check speaks plain SMTP/TLS without our CA; the test waits for the port
controller = Quiet(Handler(), **kwargs)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub ca_file: PathBuf,
    log: PathBuf,
}

impl SmtpServer {
    /// Starts aiosmtpd in `mode` with files under `dir`; waits until it accepts connections.
    pub async fn start(dir: &Path, mode: &str) -> SmtpServer {
        let ca_params = {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.key_usages =
                vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
            p
        };
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("key"))
            .expect("ca");
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .signed_by(&leaf_key, &ca)
            .expect("leaf");
        let ca_file = dir.join(format!("smtp-{mode}-ca.pem"));
        let cert = dir.join(format!("smtp-{mode}-cert.pem"));
        let key = dir.join(format!("smtp-{mode}-key.pem"));
        let log = dir.join(format!("smtp-{mode}.jsonl"));
        std::fs::write(&ca_file, ca.pem()).expect("ca");
        std::fs::write(&cert, leaf.pem()).expect("cert");
        std::fs::write(&key, leaf_key.serialize_pem()).expect("key");
        let port = super::sandbox::free_port();
        let child = Command::new("/usr/bin/python3")
            .args(["-c", SERVER, mode, &port.to_string()])
            .args([&cert, &key, &log])
            .args([USER, PASSWORD])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (Debian: python3-aiosmtpd) runs");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "aiosmtpd did not start (is python3-aiosmtpd installed?)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        SmtpServer { child, port, ca_file, log }
    }

    /// What the server saw, one JSON object per AUTH, MAIL and message.
    pub fn seen(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    pub fn messages(&self) -> Vec<serde_json::Value> {
        self.seen().into_iter().filter(|e| e["event"] == "data").collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
