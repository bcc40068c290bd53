//! Typed views of the Web API's answers, read tolerantly, one device at a time.
//!
//! No DeviceObject field is `required` in Spotify's spec: `id` and `volume_percent` may be
//! null, `type` is an open string with three casings in the wild, and fields get added. So
//! answers are read by hand from the JSON tree, field by field, and one odd field never
//! fails a poll (issue 10: `"is_active": 1` on one device once made the whole answer
//! unreadable, and the daemon backed off for good):
//! - `null` or missing is absent; unknown fields are kept in `extra`.
//! - A value with a meaningful reading is read: 0/1 and `"true"`/`"false"` as booleans,
//!   `"55"` or `54.6` as a volume, a number or boolean as its string form for a name.
//! - A value without one makes an optional field absent (a [`Problem`] says so).
//! - A device whose `name` or `type` (what identity rests on) is a list or an object, or a
//!   list entry that is not an object, cannot be read: it is skipped and counted in
//!   [`DeviceList::skipped`]; the playing device of `/me/player` becomes `None` and sets
//!   [`Playback::unreadable_device`]. The other devices are used.
//! - Only the shape around the devices is strict: the answer must be an object and
//!   `devices` a list (missing or null reads as none), else nothing in it can be trusted.
//!
//! - What one answer can cost is bounded (issue 11): at most [`MAX_DEVICES_PER_ANSWER`]
//!   devices are read; the parser steps over the rest without building them and counts
//!   them in [`DeviceList::cut`] (so a 1 MiB answer of 349k empty objects is a few
//!   milliseconds, not a tree of 349k values). Names, types, ids and titles are kept up to
//!   `text::MAX_KEPT_CHARS` visible characters ([`crate::text::keep`]); a track's artists up
//!   to [`MAX_ARTISTS`].
//!
//! A poll that skipped a device is no evidence that any device left, since the skipped one
//! may be it: the count travels in `audit::Snapshot::skipped`, and the rules and the store
//! draw no conclusion from absence while it is non-zero. A [`Problem`] names a place, a
//! field and a JSON kind, all spelled in this file: never a value or a name from the
//! answer, which anyone signed in to the account controls. Pure data; no I/O.

use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::text::keep;

/// The most devices read from one answer. An account has a handful; Spotify's own device
/// limit is far below this. Past it the answer is an attack or a fault: the rest are counted,
/// not read, and absence proves nothing for that poll (they may include any device).
pub const MAX_DEVICES_PER_ANSWER: usize = 500;

/// The most artists of a track kept: what plays is one line in an alert.
pub const MAX_ARTISTS: usize = 20;

/// One Spotify Connect device, as `/me/player/devices` or `/me/player` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Device {
    /// Spotify's id: "persistent to some extent". Rotates on reconnect; may be null.
    pub id: Option<String>,
    pub is_active: bool,
    pub is_private_session: bool,
    pub is_restricted: bool,
    /// Set by the person or a maker's model name. Untrusted input: may hold anything.
    pub name: String,
    /// Open string: "Computer", "smartphone", "cast_audio", ... Compare with [`kind_key`].
    #[serde(rename = "type")]
    pub kind: String,
    /// 0-100 or null; a value out of range is kept as absent rather than rejected.
    pub volume_percent: Option<u8>,
    pub supports_volume: Option<bool>,
    /// Fields this version does not know, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The fields [`Device`] reads; every other one goes to `extra`.
const DEVICE_FIELDS: &[&str] = &[
    "id",
    "is_active",
    "is_private_session",
    "is_restricted",
    "name",
    "type",
    "volume_percent",
    "supports_volume",
];

/// The body of `/me/player/devices`: the devices that could be read, and how many could not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceList {
    pub devices: Vec<Device>,
    /// Entries that could not be read and were left out. Non-zero means a device missing
    /// from `devices` may still be online.
    pub skipped: usize,
    /// Entries beyond [`MAX_DEVICES_PER_ANSWER`], counted and not read. Non-zero means the
    /// same as `skipped` does.
    pub cut: usize,
}

/// What `/me/player` says is going on. Only the fields the audit uses are typed.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Playback {
    pub device: Option<Device>,
    /// The answer named a playing device that could not be read (`device` is then `None`).
    #[serde(skip)]
    pub unreadable_device: bool,
    pub is_playing: bool,
    /// "track", "episode", "ad" or "unknown".
    pub currently_playing_type: Option<String>,
    pub item: Option<Item>,
}

/// A track or an episode; told apart by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Item {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub artists: Vec<Artist>,
    /// Episodes carry their show.
    pub show: Option<Show>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Artist {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Show {
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

/// The kind of a JSON value: what a [`Problem`] names instead of the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsonKind {
    Null,
    Boolean,
    Number,
    String,
    List,
    Object,
}

impl JsonKind {
    pub fn of(v: &Value) -> JsonKind {
        match v {
            Value::Null => JsonKind::Null,
            Value::Bool(_) => JsonKind::Boolean,
            Value::Number(_) => JsonKind::Number,
            Value::String(_) => JsonKind::String,
            Value::Array(_) => JsonKind::List,
            Value::Object(_) => JsonKind::Object,
        }
    }
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Null => "null",
            JsonKind::Boolean => "a boolean",
            JsonKind::Number => "a number",
            JsonKind::String => "a string",
            JsonKind::List => "a list",
            JsonKind::Object => "an object",
        })
    }
}

/// Where in an answer a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place {
    /// The entry at this index of `/me/player/devices`'s `devices`.
    Listed(usize),
    /// `/me/player`'s top level.
    Playback,
    /// `/me/player`'s `device`.
    PlayingDevice,
    /// `/me/player`'s `item`.
    Item,
    /// The entry at this index of `item.artists`.
    Artist(usize),
    /// `item.show`.
    Show,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Listed(i) => write!(f, "devices[{i}]"),
            Place::Playback => f.write_str("the playback answer"),
            Place::PlayingDevice => f.write_str("device"),
            Place::Item => f.write_str("item"),
            Place::Artist(i) => write!(f, "item.artists[{i}]"),
            Place::Show => f.write_str("item.show"),
        }
    }
}

/// What became of a value that could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The field (or list entry) is read as absent; the rest is used.
    Absent,
    /// The whole device cannot be read: skipped from the list, or no playing device.
    DeviceSkipped,
}

/// A value in an answer that had no meaningful reading. Built only from this file's own
/// words and the JSON kind found, so it is safe to log: no value from the answer is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Problem {
    pub place: Place,
    /// The field at `place`; `None` when `place` itself is not an object.
    pub field: Option<&'static str>,
    pub found: JsonKind,
    pub outcome: Outcome,
}

/// A [`Problem`] without the list index: two devices with the same odd field, or the same
/// device at another position in the next answer, are the same problem to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProblemKind {
    place: std::mem::Discriminant<Place>,
    field: Option<&'static str>,
    found: JsonKind,
    outcome: Outcome,
}

impl Problem {
    pub fn kind(&self) -> ProblemKind {
        ProblemKind {
            place: std::mem::discriminant(&self.place),
            field: self.field,
            found: self.found,
            outcome: self.outcome,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (place, found) = (self.place, self.found);
        match self.field {
            None => write!(f, "{place} is {found}, not an object")?,
            Some(field) => write!(f, "{place}: `{field}` is {found}")?,
        }
        match (self.outcome, self.place) {
            (Outcome::Absent, _) => f.write_str("; read as absent"),
            (Outcome::DeviceSkipped, Place::Listed(_)) => f.write_str("; the device is skipped"),
            (Outcome::DeviceSkipped, _) => f.write_str("; read as no playing device"),
        }
    }
}

impl DeviceList {
    /// Reads `/me/player/devices`. `Err` (a reason safe to log) only when the answer is not
    /// an object or `devices` is not a list; each device that cannot be read is skipped,
    /// counted, and described in `problems`.
    pub fn read(answer: &Value, problems: &mut Vec<Problem>) -> Result<DeviceList, String> {
        let object = top_level(answer)?;
        let entries = match object.get("devices") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(entries)) => entries.as_slice(),
            Some(other) => return Err(format!("`devices` is {}, not a list", JsonKind::of(other))),
        };
        let kept = entries.len().min(MAX_DEVICES_PER_ANSWER);
        Ok(DeviceList::from_entries(&entries[..kept], entries.len() - kept, problems))
    }

    /// Parses and reads the body of `/me/player/devices` like [`DeviceList::read`], but
    /// builds JSON values for the first [`MAX_DEVICES_PER_ANSWER`] entries only: the parser
    /// steps over the rest (still checking they are JSON) and counts them in `cut`. `Err` (a
    /// reason safe to log) when the body is not JSON or not the right shape.
    pub fn parse(body: &[u8], problems: &mut Vec<Problem>) -> Result<DeviceList, String> {
        match serde_json::from_slice::<DevicesAnswer>(body).map_err(|e| e.to_string())? {
            DevicesAnswer::NotObject(kind) => Err(format!("the answer is {kind}, not an object")),
            DevicesAnswer::Object(Entries::NotList(kind)) => Err(format!("`devices` is {kind}, not a list")),
            DevicesAnswer::Object(Entries::List { kept, cut }) => {
                Ok(DeviceList::from_entries(&kept, cut, problems))
            }
        }
    }

    fn from_entries(entries: &[Value], cut: usize, problems: &mut Vec<Problem>) -> DeviceList {
        let mut list = DeviceList { devices: Vec::with_capacity(entries.len()), skipped: 0, cut };
        for (i, entry) in entries.iter().enumerate() {
            match Device::read(entry, Place::Listed(i), problems) {
                Some(device) => list.devices.push(device),
                None => list.skipped += 1,
            }
        }
        list
    }
}

/// `/me/player/devices` as far as the parser builds it.
enum DevicesAnswer {
    NotObject(JsonKind),
    Object(Entries),
}

/// The `devices` field: the entries kept as JSON values, and how many more were stepped over.
enum Entries {
    NotList(JsonKind),
    List { kept: Vec<Value>, cut: usize },
}

impl<'de> Deserialize<'de> for DevicesAnswer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DevicesAnswer, D::Error> {
        struct Top;
        impl<'de> Visitor<'de> for Top {
            type Value = DevicesAnswer;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DevicesAnswer, A::Error> {
                // Missing or null reads as no devices; a repeated key, like serde_json's
                // own maps, as its last value.
                let mut devices = Entries::List { kept: Vec::new(), cut: 0 };
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "devices" {
                        devices = map.next_value_seed(EntriesSeed)?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(DevicesAnswer::Object(devices))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DevicesAnswer, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(DevicesAnswer::NotObject(JsonKind::List))
            }
            fn visit_unit<E>(self) -> Result<DevicesAnswer, E> {
                Ok(DevicesAnswer::NotObject(JsonKind::Null))
            }
            fn visit_bool<E>(self, _: bool) -> Result<DevicesAnswer, E> {
                Ok(DevicesAnswer::NotObject(JsonKind::Boolean))
            }
            fn visit_i64<E>(self, _: i64) -> Result<DevicesAnswer, E> {
                Ok(DevicesAnswer::NotObject(JsonKind::Number))
            }
            fn visit_u64<E>(self, _: u64) -> Result<DevicesAnswer, E> {
                Ok(DevicesAnswer::NotObject(JsonKind::Number))
            }
            fn visit_f64<E>(self, _: f64) -> Result<DevicesAnswer, E> {
                Ok(DevicesAnswer::NotObject(JsonKind::Number))
            }
            fn visit_str<E>(self, _: &str) -> Result<DevicesAnswer, E> {
                Ok(DevicesAnswer::NotObject(JsonKind::String))
            }
        }
        d.deserialize_any(Top)
    }
}

/// Reads `devices`: a list keeps its first [`MAX_DEVICES_PER_ANSWER`] entries as values and
/// counts the rest, each stepped over as [`IgnoredAny`] (nothing built, nothing kept).
struct EntriesSeed;

impl<'de> DeserializeSeed<'de> for EntriesSeed {
    type Value = Entries;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Entries, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed {
    type Value = Entries;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entries, A::Error> {
        let mut kept = Vec::new();
        while kept.len() < MAX_DEVICES_PER_ANSWER {
            match seq.next_element::<Value>()? {
                Some(v) => kept.push(v),
                None => return Ok(Entries::List { kept, cut: 0 }),
            }
        }
        let mut cut = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            cut += 1;
        }
        Ok(Entries::List { kept, cut })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Entries::NotList(JsonKind::Object))
    }
    fn visit_unit<E>(self) -> Result<Entries, E> {
        Ok(Entries::List { kept: Vec::new(), cut: 0 })
    }
    fn visit_bool<E>(self, _: bool) -> Result<Entries, E> {
        Ok(Entries::NotList(JsonKind::Boolean))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Entries, E> {
        Ok(Entries::NotList(JsonKind::Number))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Entries, E> {
        Ok(Entries::NotList(JsonKind::Number))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Entries, E> {
        Ok(Entries::NotList(JsonKind::Number))
    }
    fn visit_str<E>(self, _: &str) -> Result<Entries, E> {
        Ok(Entries::NotList(JsonKind::String))
    }
}

impl Device {
    /// Reads one DeviceObject found at `place`; `None` (with the reason in `problems`) when
    /// it is not an object or its `name` or `type` is a list or an object.
    pub fn read(value: &Value, place: Place, problems: &mut Vec<Problem>) -> Option<Device> {
        let Some(object) = value.as_object() else {
            problems.push(Problem {
                place,
                field: None,
                found: JsonKind::of(value),
                outcome: Outcome::DeviceSkipped,
            });
            return None;
        };
        let mut f = Fields { object, place, problems };
        // Identity rests on these two: with no reading, the device cannot be told apart.
        let name = f.label("name")?;
        let kind = f.label("type")?;
        Some(Device {
            id: f.id("id"),
            is_active: f.flag("is_active").unwrap_or_default(),
            is_private_session: f.flag("is_private_session").unwrap_or_default(),
            is_restricted: f.flag("is_restricted").unwrap_or_default(),
            name,
            kind,
            volume_percent: f.percent("volume_percent"),
            supports_volume: f.flag("supports_volume"),
            extra: object
                .iter()
                .filter(|(k, _)| !DEVICE_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

impl Playback {
    /// Reads `/me/player`. `Err` (a reason safe to log) only when the answer is not an
    /// object; a playing device that cannot be read becomes `None` with
    /// `unreadable_device` set, and every other odd field is read as absent.
    pub fn read(answer: &Value, problems: &mut Vec<Problem>) -> Result<Playback, String> {
        let object = top_level(answer)?;
        let mut f = Fields { object, place: Place::Playback, problems };
        let (device, unreadable_device) = match f.get("device") {
            None => (None, false),
            Some(v) => match Device::read(v, Place::PlayingDevice, f.problems) {
                Some(d) => (Some(d), false),
                None => (None, true),
            },
        };
        Ok(Playback {
            device,
            unreadable_device,
            is_playing: f.flag("is_playing").unwrap_or_default(),
            currently_playing_type: f.text("currently_playing_type"),
            item: f.object("item").map(|item| Item::read(item, f.problems)),
        })
    }
}

impl Item {
    fn read(object: &Map<String, Value>, problems: &mut Vec<Problem>) -> Item {
        let mut f = Fields { object, place: Place::Item, problems };
        let name = f.text("name").unwrap_or_default();
        let kind = f.text("type").unwrap_or_default();
        let mut artists = Vec::new();
        for (i, entry) in f.list("artists").into_iter().flatten().take(MAX_ARTISTS).enumerate() {
            match entry.as_object() {
                Some(object) => {
                    let mut a = Fields { object, place: Place::Artist(i), problems: f.problems };
                    artists.push(Artist { name: a.text("name").unwrap_or_default() });
                }
                None => f.problems.push(Problem {
                    place: Place::Artist(i),
                    field: None,
                    found: JsonKind::of(entry),
                    outcome: Outcome::Absent,
                }),
            }
        }
        let show = f.object("show").map(|object| {
            let mut s = Fields { object, place: Place::Show, problems: f.problems };
            Show { name: s.text("name").unwrap_or_default() }
        });
        Item { name, kind, artists, show }
    }
}

/// The answer's top level, which must be an object.
fn top_level(answer: &Value) -> Result<&Map<String, Value>, String> {
    answer.as_object().ok_or_else(|| format!("the answer is {}, not an object", JsonKind::of(answer)))
}

/// The fields of one object, read leniently; what has no reading lands in `problems`.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    place: Place,
    problems: &'a mut Vec<Problem>,
}

impl<'a> Fields<'a> {
    /// The value of `field`, with `null` read as absent.
    fn get(&self, field: &'static str) -> Option<&'a Value> {
        self.object.get(field).filter(|v| !v.is_null())
    }

    /// Notes that `v`, found in `field`, has no reading and becomes absent.
    fn absent<T>(&mut self, field: &'static str, v: &Value) -> Option<T> {
        self.problems.push(Problem {
            place: self.place,
            field: Some(field),
            found: JsonKind::of(v),
            outcome: Outcome::Absent,
        });
        None
    }

    /// A boolean: `true`/`false`, the numbers 0 and 1 (`1.0` too), or those four as strings
    /// in any case. Any other value has no reading.
    fn flag(&mut self, field: &'static str) -> Option<bool> {
        let v = self.get(field)?;
        let read = match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => n.as_f64().filter(|x| *x == 0.0 || *x == 1.0).map(|x| x == 1.0),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        };
        read.or_else(|| self.absent(field, v))
    }

    /// An id: a string, or a number's string form (kept up to a bound, like names).
    fn id(&mut self, field: &'static str) -> Option<String> {
        let v = self.get(field)?;
        match v {
            Value::String(s) => Some(keep(s.clone())),
            Value::Number(n) => Some(n.to_string()),
            _ => self.absent(field, v),
        }
    }

    /// Text: a string, or the string form of a number or boolean; a list or an object has
    /// no reading.
    fn text(&mut self, field: &'static str) -> Option<String> {
        let v = self.get(field)?;
        scalar_text(v).or_else(|| self.absent(field, v))
    }

    /// A device's `name` or `type`: read like [`Fields::text`], missing or null as empty.
    /// `None` when it has no reading: the device cannot be read.
    fn label(&mut self, field: &'static str) -> Option<String> {
        let Some(v) = self.get(field) else { return Some(String::new()) };
        let read = scalar_text(v);
        if read.is_none() {
            self.problems.push(Problem {
                place: self.place,
                field: Some(field),
                found: JsonKind::of(v),
                outcome: Outcome::DeviceSkipped,
            });
        }
        read
    }

    /// A percentage: a number, or a string holding one, within 0..=100 (rounded).
    fn percent(&mut self, field: &'static str) -> Option<u8> {
        let v = self.get(field)?;
        let number = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        // NaN and the infinities fail the range check too.
        let read = number.filter(|x| (0.0..=100.0).contains(x)).map(|x| x.round() as u8);
        read.or_else(|| self.absent(field, v))
    }

    /// A nested object; anything else is absent.
    fn object(&mut self, field: &'static str) -> Option<&'a Map<String, Value>> {
        let v = self.get(field)?;
        v.as_object().or_else(|| self.absent(field, v))
    }

    /// A list; anything else is absent.
    fn list(&mut self, field: &'static str) -> Option<&'a Vec<Value>> {
        let v = self.get(field)?;
        v.as_array().or_else(|| self.absent(field, v))
    }
}

/// The string form of a string, number or boolean; a long string is cut ([`keep`]).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(keep(s.clone())),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Reads one device as the only entry of a list: the device, or `None` if skipped.
    fn one(device: Value) -> (Option<Device>, Vec<Problem>) {
        let mut problems = Vec::new();
        let list = DeviceList::read(&json!({ "devices": [device] }), &mut problems).expect("a list");
        assert_eq!(list.devices.len() + list.skipped, 1);
        (list.devices.into_iter().next(), problems)
    }

    fn device(v: Value) -> Device {
        let (d, problems) = one(v);
        d.unwrap_or_else(|| panic!("readable, but: {problems:?}"))
    }

    fn playback(v: Value) -> (Playback, Vec<Problem>) {
        let mut problems = Vec::new();
        (Playback::read(&v, &mut problems).expect("an object"), problems)
    }

    #[test]
    fn documented_device_parses() {
        let (d, problems) = one(json!({
            "id": "abc", "is_active": true, "is_private_session": false, "is_restricted": false,
            "name": "Kitchen speaker", "type": "computer", "volume_percent": 59, "supports_volume": true
        }));
        let d = d.expect("documented shape");
        assert!(problems.is_empty());
        assert_eq!(d.id.as_deref(), Some("abc"));
        assert!(d.is_active);
        assert_eq!((d.name.as_str(), d.kind.as_str()), ("Kitchen speaker", "computer"));
        assert_eq!(d.volume_percent, Some(59));
        assert_eq!(d.supports_volume, Some(true));
        assert!(d.extra.is_empty());
    }

    #[test]
    fn nulls_missing_fields_and_extras_are_tolerated() {
        let (d, problems) = one(json!({
            "id": null, "is_active": null, "name": null, "type": "HomeThing",
            "volume_percent": null, "supports_volume": null, "future_field": {"x": 1}
        }));
        let d = d.expect("tolerant");
        assert!(problems.is_empty(), "null is absent, not a problem: {problems:?}");
        assert_eq!(d.id, None);
        assert!(!d.is_active);
        assert_eq!(d.name, "");
        assert_eq!(d.kind, "HomeThing");
        assert_eq!(d.volume_percent, None);
        assert_eq!(d.supports_volume, None);
        assert_eq!(d.extra.get("future_field"), Some(&json!({"x": 1})));
        assert_eq!(device(json!({})), Device::default(), "all optional");
    }

    /// Issue 10: `"is_active": 1` made the whole answer Malformed.
    #[test]
    fn numbers_and_strings_where_booleans_belong_are_read() {
        for (v, want) in [
            (json!(1), true),
            (json!(0), false),
            (json!(1.0), true),
            (json!(0.0), false),
            (json!("true"), true),
            (json!("false"), false),
            (json!(" TRUE "), true),
            (json!("1"), true),
            (json!("0"), false),
        ] {
            let (d, problems) = one(json!({ "is_active": v, "is_restricted": v, "supports_volume": v }));
            let d = d.expect("readable");
            assert_eq!((d.is_active, d.is_restricted, d.supports_volume), (want, want, Some(want)), "{v}");
            assert!(problems.is_empty(), "{v}: {problems:?}");
        }
    }

    #[test]
    fn booleans_without_a_reading_become_absent_and_are_reported() {
        for (v, found) in [
            (json!(2), JsonKind::Number),
            (json!(0.5), JsonKind::Number),
            (json!("yes"), JsonKind::String),
            (json!({"a": 1}), JsonKind::Object),
            (json!([true]), JsonKind::List),
        ] {
            let (d, problems) = one(json!({"name": "Phone", "is_active": v, "supports_volume": v}));
            let d = d.expect("one odd field does not make the device unreadable");
            assert!(!d.is_active);
            assert_eq!(d.supports_volume, None);
            assert_eq!(d.name, "Phone");
            assert_eq!(
                problems,
                ["is_active", "supports_volume"].map(|field| Problem {
                    place: Place::Listed(0),
                    field: Some(field),
                    found,
                    outcome: Outcome::Absent,
                }),
                "{v}"
            );
        }
    }

    #[test]
    fn volumes_are_read_from_numbers_floats_and_strings_else_absent() {
        for (v, want) in [
            (json!(55), Some(55)),
            (json!("55"), Some(55)),
            (json!(" 7 "), Some(7)),
            (json!(33.6), Some(34)),
            (json!("33.4"), Some(33)),
            (json!(0), Some(0)),
            (json!(100), Some(100)),
            (json!(101), None),
            (json!(-1), None),
            (json!("x"), None),
            (json!("NaN"), None),
            (json!("inf"), None),
            (json!(true), None),
            (json!([50]), None),
        ] {
            let (d, problems) = one(json!({ "volume_percent": v }));
            assert_eq!(d.expect("readable").volume_percent, want, "{v}");
            assert_eq!(problems.len(), usize::from(want.is_none()), "{v}: a dropped value is reported");
        }
    }

    #[test]
    fn ids_names_and_types_take_the_string_form_of_numbers() {
        let d = device(json!({"id": 12345, "name": 42, "type": 7.5}));
        assert_eq!(d.id.as_deref(), Some("12345"));
        assert_eq!(d.name, "42");
        assert_eq!(d.kind, "7.5");
        let d = device(json!({"name": true, "type": false}));
        assert_eq!((d.name.as_str(), d.kind.as_str()), ("true", "false"));
        // An id with no reading is absent: the device is then matched by name and type.
        let (d, problems) = one(json!({"id": {"a": 1}, "name": "TV", "type": "TV"}));
        assert_eq!(d.expect("readable").id, None);
        assert_eq!(problems[0].to_string(), "devices[0]: `id` is an object; read as absent");
    }

    #[test]
    fn a_list_or_object_name_or_type_makes_the_device_unreadable() {
        for bad in [json!({"name": {"a": 1}}), json!({"name": ["x"]}), json!({"type": {"a": 1}})] {
            let (d, problems) = one(bad.clone());
            assert_eq!(d, None, "{bad}");
            assert_eq!(problems.len(), 1, "{bad}");
            assert_eq!(problems[0].outcome, Outcome::DeviceSkipped);
        }
    }

    #[test]
    fn unreadable_devices_are_skipped_and_counted_and_the_rest_is_used() {
        let mut problems = Vec::new();
        let answer = json!({"devices": [
            {"id": "a", "name": "Laptop", "type": "Computer", "is_active": 1},
            "a string",
            {"id": "b", "name": {"a": 1}, "type": "Smartphone"},
            null,
            7,
            [],
            {"id": "c", "name": "Phone", "type": "Smartphone", "volume_percent": "55"},
        ]});
        let list = DeviceList::read(&answer, &mut problems).expect("the rest is used");
        let ids: Vec<_> = list.devices.iter().map(|d| d.id.as_deref()).collect();
        assert_eq!(ids, [Some("a"), Some("c")]);
        assert!(list.devices[0].is_active);
        assert_eq!(list.devices[1].volume_percent, Some(55));
        assert_eq!(list.skipped, 5);
        let said: Vec<String> = problems.iter().map(Problem::to_string).collect();
        assert_eq!(
            said,
            [
                "devices[1] is a string, not an object; the device is skipped",
                "devices[2]: `name` is an object; the device is skipped",
                "devices[3] is null, not an object; the device is skipped",
                "devices[4] is a number, not an object; the device is skipped",
                "devices[5] is a list, not an object; the device is skipped",
            ]
        );
    }

    #[test]
    fn problems_never_carry_values_from_the_answer() {
        let secret = "<b>evil</b> \u{202e}name";
        let mut problems = Vec::new();
        let answer = json!({"devices": [
            secret,
            {"name": {"x": secret}, "type": secret},
            {"name": secret, "id": [secret], "is_active": secret, "volume_percent": secret, "supports_volume": secret},
        ]});
        let list = DeviceList::read(&answer, &mut problems).expect("a list");
        assert_eq!(list.skipped, 2);
        assert_eq!(problems.len(), 6);
        for p in &problems {
            let said = p.to_string();
            assert!(!said.contains("evil") && !said.contains('\u{202e}') && !said.contains('<'), "{said}");
        }
    }

    #[test]
    fn the_same_problem_elsewhere_is_the_same_kind() {
        let at = |i| Problem {
            place: Place::Listed(i),
            field: Some("name"),
            found: JsonKind::Object,
            outcome: Outcome::DeviceSkipped,
        };
        assert_eq!(at(0).kind(), at(3).kind(), "the index is not part of the kind");
        assert_ne!(at(0).kind(), Problem { found: JsonKind::List, ..at(0) }.kind());
        assert_ne!(at(0).kind(), Problem { place: Place::PlayingDevice, ..at(0) }.kind());
    }

    #[test]
    fn the_answer_must_be_an_object_with_a_list_of_devices() {
        let mut problems = Vec::new();
        for (answer, reason) in [
            (json!({"devices": {"0": {"name": "x"}}}), "`devices` is an object, not a list"),
            (json!({"devices": "none"}), "`devices` is a string, not a list"),
            (json!({"devices": 3}), "`devices` is a number, not a list"),
            (json!([{"name": "x"}]), "the answer is a list, not an object"),
            (json!("devices"), "the answer is a string, not an object"),
        ] {
            assert_eq!(DeviceList::read(&answer, &mut problems), Err(reason.to_string()));
        }
        assert!(problems.is_empty());
    }

    #[test]
    fn the_parser_refuses_the_same_shapes_as_the_reader() {
        let mut problems = Vec::new();
        for (body, reason) in [
            (r#"{"devices": {"0": {"name": "x"}}}"#, "`devices` is an object, not a list"),
            (r#"{"devices": "none"}"#, "`devices` is a string, not a list"),
            (r#"{"devices": 3}"#, "`devices` is a number, not a list"),
            (r#"{"devices": true}"#, "`devices` is a boolean, not a list"),
            (r#"[{"name": "x"}]"#, "the answer is a list, not an object"),
            (r#""devices""#, "the answer is a string, not an object"),
            ("null", "the answer is null, not an object"),
        ] {
            assert_eq!(DeviceList::parse(body.as_bytes(), &mut problems), Err(reason.to_string()), "{body}");
        }
        assert!(problems.is_empty());
        for broken in [r#"{"devices": ["#, r#"{"devices": []} x"#, "", r#"{"devices": [{}, ]}"#] {
            assert!(DeviceList::parse(broken.as_bytes(), &mut problems).is_err(), "{broken}");
        }
        for empty in [r#"{"devices": null}"#, "{}", r#"{"other": [1, {"a": []}]}"#] {
            assert_eq!(DeviceList::parse(empty.as_bytes(), &mut problems), Ok(DeviceList::default()));
        }
        let answer = json!({"x": {"devices": 1}, "devices": [
            {"id": "a", "name": "Phone", "type": "Smartphone", "is_active": 1}, 7
        ]});
        let body = serde_json::to_vec(&answer).expect("json");
        let (mut p1, mut p2) = (Vec::new(), Vec::new());
        assert_eq!(DeviceList::parse(&body, &mut p1), DeviceList::read(&answer, &mut p2), "one reading");
        assert_eq!(p1, p2);
    }

    /// Issue 11: a 1 MiB answer of empty objects (349k of them) was parsed into a tree of
    /// 349k values and read as 349k devices: 3.5 s and 217 MB in a `check` (debug build).
    /// The parser now builds the first 500 and steps over the rest, counting them.
    #[test]
    fn a_1_mib_answer_of_empty_objects_is_cut_at_the_cap_and_counted() {
        let n = 349_000;
        let body = format!("{{\"devices\":[{}]}}", vec!["{}"; n].join(","));
        assert!(body.len() <= crate::spotify::MAX_RESPONSE_BYTES, "within the size cap: {}", body.len());
        let mut problems = Vec::new();
        let started = std::time::Instant::now();
        let list = DeviceList::parse(body.as_bytes(), &mut problems).expect("a list");
        let took = started.elapsed();
        assert_eq!(list.devices.len(), MAX_DEVICES_PER_ANSWER);
        assert_eq!(list.cut, n - MAX_DEVICES_PER_ANSWER, "the rest are counted");
        assert_eq!(list.skipped, 0, "an empty object is a device with no name");
        assert!(problems.is_empty());
        // Not a speed target (machines differ); printed for the record.
        let started = std::time::Instant::now();
        let tree: Value = serde_json::from_slice(body.as_bytes()).expect("json");
        eprintln!("bounded parse: {took:?}; the whole tree, as before: {:?}", started.elapsed());
        // Reading an already-built tree cuts at the same place.
        assert_eq!(
            DeviceList::read(&tree, &mut problems).map(|l| (l.devices.len(), l.cut)),
            Ok((500, n - 500))
        );
    }

    #[test]
    fn a_200_kb_name_is_kept_cut() {
        let d =
            device(json!({"id": "i".repeat(5000), "name": "n".repeat(200 * 1024), "type": "t".repeat(300)}));
        assert_eq!(d.name.chars().count(), crate::text::MAX_KEPT_CHARS + 1);
        assert!(d.name.ends_with('…'));
        assert_eq!(d.kind.chars().count(), crate::text::MAX_KEPT_CHARS + 1);
        assert_eq!(d.id.map(|i| i.chars().count()), Some(crate::text::MAX_KEPT_CHARS + 1));
        let artists: Vec<Value> = (0..1000).map(|i| json!({"name": format!("A{i}")})).collect();
        let (p, _) = playback(json!({"item": {"name": "Song", "type": "track", "artists": artists}}));
        assert_eq!(p.item.map(|i| i.artists.len()), Some(MAX_ARTISTS));
    }

    #[test]
    fn device_list_with_null_or_missing_devices_is_empty() {
        let mut problems = Vec::new();
        for answer in [json!({"devices": null}), json!({})] {
            let l = DeviceList::read(&answer, &mut problems).expect("tolerant");
            assert_eq!(l, DeviceList::default());
        }
    }

    #[test]
    fn an_unreadable_playing_device_is_none_and_flagged() {
        let (p, problems) = playback(json!({
            "device": {"id": "x", "name": ["Speaker"], "type": "Speaker"},
            "is_playing": 1, "currently_playing_type": "track",
            "item": {"name": "Song", "type": "track", "artists": [{"name": "A"}]}
        }));
        assert_eq!(p.device, None);
        assert!(p.unreadable_device);
        assert!(p.is_playing, "the rest is read");
        assert_eq!(p.describe(), "\u{201c}Song\u{201d} by A");
        assert_eq!(problems[0].to_string(), "device: `name` is a list; read as no playing device");
        let (p, problems) = playback(json!({"device": "Speaker", "is_playing": true}));
        assert!(p.device.is_none() && p.unreadable_device);
        assert_eq!(problems[0].to_string(), "device is a string, not an object; read as no playing device");
        // A readable device with an odd field is kept.
        let (p, _) = playback(json!({"device": {"id": "x", "name": "Speaker", "is_active": "true"}}));
        assert!(p.device.is_some_and(|d| d.is_active) && !p.unreadable_device);
        // No device at all is not a problem.
        let (p, problems) = playback(json!({"device": null, "is_playing": false}));
        assert!(p.device.is_none() && !p.unreadable_device && problems.is_empty());
    }

    #[test]
    fn odd_playback_fields_are_read_as_absent() {
        let (p, problems) = playback(json!({
            "is_playing": "yes", "currently_playing_type": {"t": 1},
            "item": {"name": 1989, "type": ["track"], "artists": [{"name": "A"}, "B", {"name": {"n": 1}}],
                     "show": "Pod"}
        }));
        assert!(!p.is_playing);
        assert_eq!(p.currently_playing_type, None);
        let item = p.item.as_ref().expect("item kept");
        assert_eq!((item.name.as_str(), item.kind.as_str()), ("1989", ""));
        assert_eq!(item.artists, [Artist { name: "A".into() }, Artist { name: String::new() }]);
        assert_eq!(item.show, None);
        assert_eq!(problems.len(), 6, "{problems:?}");
        let (p, _) = playback(json!({"item": "Song", "artists": 3}));
        assert_eq!(p.item, None);
        let mut problems = Vec::new();
        assert_eq!(
            Playback::read(&json!([1]), &mut problems),
            Err("the answer is a list, not an object".to_string())
        );
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
        let (p, _) = playback(json!({
            "is_playing": true, "currently_playing_type": "track",
            "item": {"name": "Song", "type": "track", "artists": [{"name": "A"}, {"name": "B"}]},
            "actions": {"disallows": {"resuming": true}}
        }));
        assert_eq!(p.describe(), "\u{201c}Song\u{201d} by A, B");
        let (ep, _) = playback(json!({
            "currently_playing_type": "episode", "item": {"name": "Ep 1", "type": "episode", "show": {"name": "Pod"}}
        }));
        assert_eq!(ep.describe(), "\u{201c}Ep 1\u{201d} from Pod");
        let (bare, _) = playback(json!({"currently_playing_type": "episode", "item": null}));
        assert_eq!(bare.describe(), "a podcast episode");
        let (ad, _) = playback(json!({"currently_playing_type": "ad"}));
        assert_eq!(ad.describe(), "an advertisement");
        assert_eq!(Playback::default().describe(), "something");
    }
}
