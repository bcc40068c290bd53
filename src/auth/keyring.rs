//! The OS secret store on Linux: the freedesktop Secret Service (GNOME Keyring, KWallet,
//! KeePassXC) over the session bus, with zbus (the copy notify-rust already brings).
//!
//! One item per account in the default collection, found by the attributes
//! `application=spotguard, account=<name>`, holding the token set as JSON. The session uses
//! the `plain` algorithm: the secret crosses only the user's own session bus socket, the
//! same trust boundary as the user's files. A keyring that is locked and would need a
//! password prompt counts as unavailable: a background daemon cannot answer prompts.

use std::collections::HashMap;
use std::time::Duration;

use zbus::{ObjectPath, OwnedObjectPath, OwnedVariant, Variant as Value};

use super::{Secret, TokenSet};

const SERVICE: &str = "org.freedesktop.secrets";
const SERVICE_PATH: &str = "/org/freedesktop/secrets";
const SERVICE_IFACE: &str = "org.freedesktop.Secret.Service";
const COLLECTION_IFACE: &str = "org.freedesktop.Secret.Collection";
const ITEM_IFACE: &str = "org.freedesktop.Secret.Item";
const DEFAULT_COLLECTION: &str = "/org/freedesktop/secrets/aliases/default";
/// Bound on one Secret Service call: a wedged keyring must not stall a poll.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the secret store could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyringError {
    #[error("no OS secret store answers on the session bus ({0})")]
    Unavailable(String),
    #[error(
        "the OS secret store is locked; unlock it (log in to the desktop) or set auth.token_store = \"file\""
    )]
    Locked,
    #[error("the OS secret store failed: {0}")]
    Failed(String),
    #[error("the tokens in the OS secret store are damaged ({0}); run `spotguard login`")]
    Damaged(String),
}

/// A secret as the Secret Service passes it: (session, parameters, value, content type).
type WireSecret = (OwnedObjectPath, Vec<u8>, Vec<u8>, String);

/// The Secret Service client. Connects per call: tokens are read once a minute at most.
#[derive(Debug, Clone, Default)]
pub struct Keyring;

impl Keyring {
    /// The account's token set, `Ok(None)` if the store has none.
    pub async fn load(&self, account: &str) -> Result<Option<TokenSet>, KeyringError> {
        bounded(async {
            let (conn, session) = open().await?;
            let Some(item) = find(&conn, account).await? else { return Ok(None) };
            let reply = conn
                .call_method(Some(SERVICE), item.as_str(), Some(ITEM_IFACE), "GetSecret", &(&session,))
                .await
                .map_err(failed)?;
            let (_, _, value, _): WireSecret = reply.body().deserialize().map_err(failed)?;
            serde_json::from_slice(&value).map(Some).map_err(|e| KeyringError::Damaged(e.to_string()))
        })
        .await
    }

    /// Stores (replaces) the account's token set.
    pub async fn save(&self, account: &str, tokens: &TokenSet) -> Result<(), KeyringError> {
        let json = serde_json::to_vec(tokens).map_err(|e| KeyringError::Failed(e.to_string()))?;
        let value = Secret::new(String::from_utf8_lossy(&json).into_owned());
        bounded(async {
            let (conn, session) = open().await?;
            let attributes = attributes(account);
            let mut properties: HashMap<&str, Value<'_>> = HashMap::new();
            properties.insert(
                "org.freedesktop.Secret.Item.Label",
                Value::from(format!("spotguard tokens ({account})")),
            );
            properties.insert("org.freedesktop.Secret.Item.Attributes", Value::from(attributes));
            let secret = (
                session,
                Vec::<u8>::new(),
                value.expose().as_bytes().to_vec(),
                "application/json".to_string(),
            );
            let reply = conn
                .call_method(
                    Some(SERVICE),
                    DEFAULT_COLLECTION,
                    Some(COLLECTION_IFACE),
                    "CreateItem",
                    &(properties, secret, true),
                )
                .await
                .map_err(failed)?;
            let (_, prompt): (OwnedObjectPath, OwnedObjectPath) =
                reply.body().deserialize().map_err(failed)?;
            if prompt.as_str() != "/" {
                return Err(KeyringError::Locked);
            }
            Ok(())
        })
        .await
    }

    /// Deletes the account's token set; `Ok(false)` if there was none.
    pub async fn remove(&self, account: &str) -> Result<bool, KeyringError> {
        bounded(async {
            let (conn, _) = open().await?;
            let Some(item) = find(&conn, account).await? else { return Ok(false) };
            conn.call_method(Some(SERVICE), item.as_str(), Some(ITEM_IFACE), "Delete", &())
                .await
                .map_err(failed)?;
            Ok(true)
        })
        .await
    }
}

fn attributes(account: &str) -> HashMap<String, String> {
    HashMap::from([
        ("application".to_string(), "spotguard".to_string()),
        ("account".to_string(), account.to_string()),
    ])
}

async fn bounded<T>(fut: impl Future<Output = Result<T, KeyringError>>) -> Result<T, KeyringError> {
    tokio::time::timeout(CALL_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(KeyringError::Failed("it did not answer within 5s".into())))
}

fn failed(e: zbus::Error) -> KeyringError {
    match &e {
        zbus::Error::FDO(fdo)
            if matches!(**fdo, zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)) =>
        {
            KeyringError::Unavailable("nothing owns org.freedesktop.secrets".into())
        }
        zbus::Error::MethodError(name, _, _) if name.as_str().ends_with("IsLocked") => KeyringError::Locked,
        _ => KeyringError::Failed(e.to_string().replace('\n', " ")),
    }
}

/// Connects and opens a `plain` session.
async fn open() -> Result<(zbus::Connection, OwnedObjectPath), KeyringError> {
    let conn = zbus::Connection::session().await.map_err(|e| KeyringError::Unavailable(e.to_string()))?;
    let reply = conn
        .call_method(
            Some(SERVICE),
            SERVICE_PATH,
            Some(SERVICE_IFACE),
            "OpenSession",
            &("plain", Value::from("")),
        )
        .await
        .map_err(failed)?;
    let (_, session): (OwnedVariant, OwnedObjectPath) = reply.body().deserialize().map_err(failed)?;
    Ok((conn, session))
}

/// The account's item, unlocking it if that needs no prompt.
async fn find(conn: &zbus::Connection, account: &str) -> Result<Option<OwnedObjectPath>, KeyringError> {
    let reply = conn
        .call_method(Some(SERVICE), SERVICE_PATH, Some(SERVICE_IFACE), "SearchItems", &(attributes(account),))
        .await
        .map_err(failed)?;
    let (unlocked, locked): (Vec<OwnedObjectPath>, Vec<OwnedObjectPath>) =
        reply.body().deserialize().map_err(failed)?;
    if let Some(item) = unlocked.into_iter().next() {
        return Ok(Some(item));
    }
    let Some(item) = locked.into_iter().next() else { return Ok(None) };
    let paths: Vec<ObjectPath<'_>> = vec![item.as_ref()];
    let reply = conn
        .call_method(Some(SERVICE), SERVICE_PATH, Some(SERVICE_IFACE), "Unlock", &(paths,))
        .await
        .map_err(failed)?;
    let (done, prompt): (Vec<OwnedObjectPath>, OwnedObjectPath) =
        reply.body().deserialize().map_err(failed)?;
    if prompt.as_str() != "/" || done.is_empty() {
        return Err(KeyringError::Locked);
    }
    Ok(Some(item))
}
