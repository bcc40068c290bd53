//! Typed views of the Web API's answers, tolerant the way the API needs.
//!
//! No DeviceObject field is `required` in Spotify's spec: `id` and `volume_percent` may be
//! null, `type` is an open string with three casings in the wild, and fields get added.
//! So every field has a default, `null` is read as absent, unknown fields are kept in
//! `extra`, and nothing here fails on a value the API documents. Pure data; no I/O.

use serde::{Deserialize, Deserializer, Serialize};

/// One Spotify Connect device, as `/me/player/devices` or `/me/player` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Device {
    /// Spotify's id: "persistent to some extent". Rotates on reconnect; may be null.
    #[serde(default, deserialize_with = "nullable")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "null_is_default")]
    pub is_active: bool,
    #[serde(default, deserialize_with = "null_is_default")]
    pub is_private_session: bool,
    #[serde(default, deserialize_with = "null_is_default")]
    pub is_restricted: bool,
    /// Set by the person or a maker's model name. Untrusted input: may hold anything.
    #[serde(default, deserialize_with = "null_is_default")]
    pub name: String,
    /// Open string: "Computer", "smartphone", "cast_audio", ... Compare with [`kind_key`].
    #[serde(rename = "type", default, deserialize_with = "null_is_default")]
    pub kind: String,
    /// 0-100 or null; a value out of range is kept as absent rather than rejected.
    #[serde(default, deserialize_with = "percent")]
    pub volume_percent: Option<u8>,
    #[serde(default, deserialize_with = "nullable")]
    pub supports_volume: Option<bool>,
    /// Fields this version does not know, kept as they came.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The body of `/me/player/devices`.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceList {
    #[serde(default, deserialize_with = "null_is_default")]
    pub devices: Vec<Device>,
}

/// What `/me/player` says is going on. Only the fields the audit uses are typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Playback {
    #[serde(default, deserialize_with = "nullable")]
    pub device: Option<Device>,
    #[serde(default, deserialize_with = "null_is_default")]
    pub is_playing: bool,
    /// "track", "episode", "ad" or "unknown".
    #[serde(default, deserialize_with = "nullable")]
    pub currently_playing_type: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub item: Option<Item>,
}

/// A track or an episode; told apart by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Item {
    #[serde(default, deserialize_with = "null_is_default")]
    pub name: String,
    #[serde(rename = "type", default, deserialize_with = "null_is_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_is_default")]
    pub artists: Vec<Artist>,
    /// Episodes carry their show.
    #[serde(default, deserialize_with = "nullable")]
    pub show: Option<Show>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Artist {
    #[serde(default, deserialize_with = "null_is_default")]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Show {
    #[serde(default, deserialize_with = "null_is_default")]
    pub name: String,
}

/// The account, from `/me`. `display_name` may be null; `email` and `product` are gone for
/// development-mode apps since 2026, so they are not read at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct User {
    #[serde(default, deserialize_with = "null_is_default")]
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub account_id: Option<String>,
}

impl Playback {
    /// A short human description of what plays: `"Song" by A, B`, an episode of a show, an ad.
    pub fn describe(&self) -> String {
        let kind = self.currently_playing_type.as_deref().unwrap_or("unknown");
        match (&self.item, kind) {
            (_, "ad") => "an advertisement".to_string(),
            (Some(item), _) if !item.artists.is_empty() => {
                let artists: Vec<&str> = item.artists.iter().map(|a| a.name.as_str()).collect();
                format!("\u{201c}{}\u{201d} by {}", item.name, artists.join(", "))
            }
            (Some(item), _) if item.show.is_some() => {
                let show = item.show.as_ref().map_or("", |s| s.name.as_str());
                format!("\u{201c}{}\u{201d} from {show}", item.name)
            }
            (Some(item), _) if !item.name.is_empty() => format!("\u{201c}{}\u{201d}", item.name),
            // Without additional_types=episode, or after a stop, item is null.
            (_, "episode") => "a podcast episode".to_string(),
            _ => "something".to_string(),
        }
    }
}

/// The comparable form of a device type: lower case, no `_`, `-` or spaces, so
/// "CastAudio", "cast_audio" and "castaudio" are one type. Empty means unknown.
pub fn kind_key(kind: &str) -> String {
    let key: String =
        kind.chars().filter(|c| !matches!(c, '_' | '-' | ' ')).flat_map(char::to_lowercase).collect();
    if key.is_empty() { "unknown".to_string() } else { key }
}

/// Reads `null` as absent.
fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// Reads `null` as the type's default.
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A volume: any JSON number in 0..=100 (integers or floats), else absent.
fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.and_then(|v| v.as_f64()).filter(|f| (0.0..=100.0).contains(f)).map(|f| f.round() as u8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documented_device_parses() {
        let d: Device = serde_json::from_value(json!({
            "id": "abc", "is_active": true, "is_private_session": false, "is_restricted": false,
            "name": "Kitchen speaker", "type": "computer", "volume_percent": 59, "supports_volume": true
        }))
        .expect("documented shape");
        assert_eq!(d.id.as_deref(), Some("abc"));
        assert!(d.is_active);
        assert_eq!(d.volume_percent, Some(59));
        assert_eq!(d.supports_volume, Some(true));
        assert!(d.extra.is_empty());
    }

    #[test]
    fn nulls_missing_fields_and_extras_are_tolerated() {
        let d: Device = serde_json::from_value(json!({
            "id": null, "is_active": null, "name": null, "type": "HomeThing",
            "volume_percent": null, "future_field": {"x": 1}
        }))
        .expect("tolerant");
        assert_eq!(d.id, None);
        assert!(!d.is_active);
        assert_eq!(d.name, "");
        assert_eq!(d.kind, "HomeThing");
        assert_eq!(d.volume_percent, None);
        assert_eq!(d.supports_volume, None);
        assert_eq!(d.extra.get("future_field"), Some(&json!({"x": 1})));
        let empty: Device = serde_json::from_value(json!({})).expect("all optional");
        assert_eq!(empty, Device::default());
    }

    #[test]
    fn odd_volumes_become_absent_not_errors() {
        for (v, want) in [(json!(101), None), (json!(-1), None), (json!(33.6), Some(34)), (json!("x"), None)]
        {
            let d: Device = serde_json::from_value(json!({ "volume_percent": v })).expect("tolerant");
            assert_eq!(d.volume_percent, want);
        }
    }

    #[test]
    fn device_list_with_null_devices_is_empty() {
        let l: DeviceList = serde_json::from_value(json!({"devices": null})).expect("tolerant");
        assert!(l.devices.is_empty());
    }

    #[test]
    fn kind_key_folds_the_three_casings() {
        assert_eq!(kind_key("CastAudio"), "castaudio");
        assert_eq!(kind_key("cast_audio"), "castaudio");
        assert_eq!(kind_key("castaudio"), "castaudio");
        assert_eq!(kind_key("Smartphone"), kind_key("smartphone"));
        assert_eq!(kind_key(""), "unknown");
    }

    #[test]
    fn describe_covers_tracks_episodes_ads_and_nothing() {
        let p: Playback = serde_json::from_value(json!({
            "is_playing": true, "currently_playing_type": "track",
            "item": {"name": "Song", "type": "track", "artists": [{"name": "A"}, {"name": "B"}]},
            "actions": {"disallows": {"resuming": true}}
        }))
        .expect("track");
        assert_eq!(p.describe(), "\u{201c}Song\u{201d} by A, B");
        let ep: Playback = serde_json::from_value(json!({
            "currently_playing_type": "episode", "item": {"name": "Ep 1", "type": "episode", "show": {"name": "Pod"}}
        }))
        .expect("episode");
        assert_eq!(ep.describe(), "\u{201c}Ep 1\u{201d} from Pod");
        let bare: Playback =
            serde_json::from_value(json!({"currently_playing_type": "episode", "item": null})).expect("bare");
        assert_eq!(bare.describe(), "a podcast episode");
        let ad: Playback = serde_json::from_value(json!({"currently_playing_type": "ad"})).expect("ad");
        assert_eq!(ad.describe(), "an advertisement");
        assert_eq!(Playback::default().describe(), "something");
    }
}
