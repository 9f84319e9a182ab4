//! A YAML tree that remembers where every node came from, and a serde `Deserializer` over it.
//!
//! serde-saphyr parses the text once into [`Node`]s (each with its line and column). Typed
//! structs are then deserialized from sub-trees independently, so one bad step does not hide
//! the errors in the next: every error carries the location of the innermost node it concerns.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde::{Deserialize, Serialize};

/// A 1-based line and column in the pipeline file (0 when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
}

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) loc: Loc,
    pub(crate) kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The value of a mapping's key, if this is a mapping that has it.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => {
                entries.iter().find(|(k, _)| matches!(&k.kind, NodeKind::Str(s) if s == key)).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Converts to JSON (for `with:` maps, which are free-form).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::from(*i),
            NodeKind::UInt(u) => Value::from(*u),
            NodeKind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            NodeKind::Str(s) => Value::String(s.clone()),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(entries.iter().map(|(k, v)| (k.key_text(), v.to_json())).collect()),
        }
    }

    fn key_text(&self) -> String {
        match &self.kind {
            NodeKind::Str(s) => s.clone(),
            NodeKind::Null => "null".into(),
            NodeKind::Bool(b) => b.to_string(),
            NodeKind::Int(i) => i.to_string(),
            NodeKind::UInt(u) => u.to_string(),
            NodeKind::Float(f) => f.to_string(),
            NodeKind::Seq(_) | NodeKind::Map(_) => "<complex key>".into(),
        }
    }

    fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) | NodeKind::UInt(_) => "an integer",
            NodeKind::Float(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// How deep mappings and sequences may nest. A pipeline needs a handful of levels; the limit
/// keeps a hostile file from exhausting the stack of whatever thread loads it (found by the
/// `pipeline` fuzz target: ~150 levels overflowed a 2 MiB thread stack in a debug build).
pub(crate) const MAX_DEPTH: usize = 32;

/// serde-saphyr's options: its default budget (aliases, anchors, sizes), with [`MAX_DEPTH`].
pub(crate) fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // YAML 1.2, as documented: `yes`/`no`/`on`/`off` are words, not booleans.
    options.strict_booleans = true;
    options
}

/// Parses YAML text into a located tree. A syntax error comes back with its location.
pub(crate) fn parse(text: &str) -> Result<Node, super::diag::Diagnostic> {
    use super::diag::Diagnostic;
    if text.trim().is_empty() {
        return Err(Diagnostic::new(Loc { line: 1, col: 1 }, "the file is empty; a pipeline starts with `version: 1`"));
    }
    serde_saphyr::from_str_with_options::<Node>(text, options()).map_err(|e| {
        let loc = e.location().map_or(Loc { line: 1, col: 1 }, |l| Loc {
            line: u32::try_from(l.line()).unwrap_or(u32::MAX),
            col: u32::try_from(l.column()).unwrap_or(u32::MAX),
        });
        let msg = e.without_snippet().to_string();
        // serde-saphyr appends "at line X column Y"; the caller renders the location itself.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).trim().to_string();
        if msg.contains("budget breached: Depth") {
            return Diagnostic::new(
                loc,
                format!(
                    "nested deeper than {MAX_DEPTH} levels of mappings and lists; a pipeline never needs that many"
                ),
            );
        }
        let mut d = super::lint::refine(text, loc, &msg);
        d.message = format!("invalid YAML: {}", d.message);
        d
    })
}

// ---------------------------------------------------------------------------------------------
// Building the tree from serde-saphyr (which gives locations through `Spanned`).

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<RawKind>::deserialize(d)?;
        let loc = Loc {
            line: u32::try_from(spanned.referenced.line()).unwrap_or(0),
            col: u32::try_from(spanned.referenced.column()).unwrap_or(0),
        };
        Ok(Node { loc, kind: spanned.value.0 })
    }
}

struct RawKind(NodeKind);

impl<'de> Deserialize<'de> for RawKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor).map(RawKind)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = NodeKind;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_none<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeKind, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> Result<NodeKind, E> {
        Ok(NodeKind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<NodeKind, E> {
        Ok(NodeKind::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<NodeKind, E> {
        Ok(i64::try_from(v).map_or(NodeKind::UInt(v), NodeKind::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<NodeKind, E> {
        Ok(NodeKind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeKind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeKind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(NodeKind::Map(entries))
    }
}

// ---------------------------------------------------------------------------------------------
// Deserializing typed structs from the tree, keeping the innermost location of each error.

/// A deserialization error and the node it is about.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeError {
    pub(crate) loc: Option<Loc>,
    pub(crate) message: String,
}

impl DeError {
    fn at(mut self, loc: Loc) -> Self {
        self.loc.get_or_insert(loc);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { loc: None, message: tidy(msg.to_string()) }
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!("unknown field `{field}`");
        if let Some(best) = closest(field, expected) {
            message.push_str(&format!(" (did you mean `{best}`?)"));
        } else if !expected.is_empty() {
            message.push_str(&format!("; expected one of: {}", expected.join(", ")));
        }
        DeError { loc: None, message }
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!("unknown value `{variant}`; expected one of: {}", expected.join(", "));
        if let Some(best) = closest(variant, expected) {
            message = format!("unknown value `{variant}` (did you mean `{best}`?)");
        }
        DeError { loc: None, message }
    }
    fn missing_field(field: &'static str) -> Self {
        DeError { loc: None, message: format!("missing field `{field}`") }
    }
}

/// serde's default messages say "invalid type: string \"x\", expected u32"; make them read well.
fn tidy(msg: String) -> String {
    msg.replace("invalid type: ", "wrong type: found ")
}

/// `true`/`false` for a YAML 1.1 boolean spelling (`yes`, `off`, …), which YAML 1.2 reads as a word.
pub(crate) fn yaml11_bool(s: &str) -> Option<&'static str> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "y" | "on" => Some("true"),
        "no" | "n" | "off" => Some("false"),
        _ => None,
    }
}

/// The candidate within edit distance 2 of `word`, if any.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

thread_local! {
    /// The location of the node being deserialized right now, read by [`Spanned`].
    static CURRENT: Cell<Loc> = const { Cell::new(Loc { line: 0, col: 0 }) };
}

/// Where the node being deserialized right now was written.
pub(crate) fn current_loc() -> Loc {
    CURRENT.with(Cell::get)
}

/// Deserializes `T` from a node; errors carry the innermost location.
pub(crate) fn from_node<'a, T: Deserialize<'a>>(node: &'a Node) -> Result<T, DeError> {
    CURRENT.with(|c| c.set(node.loc));
    T::deserialize(node).map_err(|e| e.at(node.loc))
}

/// A value and where it was written, for errors found after deserialization.
#[derive(Debug, Clone, Default)]
pub struct Spanned<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> Spanned<T> {
    pub fn new(value: T) -> Self {
        Spanned { value, loc: Loc::default() }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let loc = CURRENT.with(Cell::get);
        Ok(Spanned { value: T::deserialize(d)?, loc })
    }
}

impl<T: Serialize> Serialize for Spanned<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Spanned<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

fn enter<'a, T>(node: &'a Node, seed: impl DeserializeSeed<'a, Value = T>) -> Result<T, DeError> {
    CURRENT.with(|c| c.set(node.loc));
    seed.deserialize(node).map_err(|e| e.at(node.loc))
}

impl<'de> Deserializer<'de> for &'de Node {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Bool(b) => visitor.visit_bool(*b),
            NodeKind::Int(i) => visitor.visit_i64(*i),
            NodeKind::UInt(u) => visitor.visit_u64(*u),
            NodeKind::Float(f) => visitor.visit_f64(*f),
            NodeKind::Str(s) => visitor.visit_borrowed_str(s),
            NodeKind::Seq(items) => visitor.visit_seq(SeqDe { items: items.iter() }),
            NodeKind::Map(entries) => visitor.visit_map(MapDe { entries: entries.iter(), value: None }),
        };
        result.map_err(|e| e.at(self.loc))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.kind {
            NodeKind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.kind {
            NodeKind::Str(s) => visitor.visit_enum(UnitVariant(s)).map_err(|e| e.at(self.loc)),
            _ => Err(DeError {
                loc: Some(self.loc),
                message: format!("wrong type: found {}, expected one of the allowed words", self.describe()),
            }),
        }
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if let NodeKind::Str(s) = &self.kind
            && let Some(fix) = yaml11_bool(s)
        {
            return Err(DeError {
                loc: Some(self.loc),
                message: format!("`{s}` is not a boolean in YAML 1.2, which pipelines are written in: write `{fix}`"),
            });
        }
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de> SeqAccess<'de> for SeqDe<'de> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        self.items.next().map(|node| enter(node, seed)).transpose()
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for MapDe<'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                enter(key, seed).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(node) => enter(node, seed),
            None => Err(de::Error::custom("value requested before key")),
        }
    }
}

struct UnitVariant<'a>(&'a str);

impl<'de> EnumAccess<'de> for UnitVariant<'de> {
    type Error = DeError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let de = de::value::BorrowedStrDeserializer::<DeError>::new(self.0);
        Ok((seed.deserialize(de)?, self))
    }
}

impl<'de> VariantAccess<'de> for UnitVariant<'de> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, DeError> {
        Err(de::Error::custom(format!("`{}` needs a value here", self.0)))
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, DeError> {
        Err(de::Error::custom(format!("`{}` needs a list here", self.0)))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, DeError> {
        Err(de::Error::custom(format!("`{}` needs a mapping here", self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Thing {
        name: Spanned<String>,
        #[serde(default)]
        count: u32,
    }

    #[test]
    fn locations_survive_into_typed_structs() {
        let node = parse("things:\n  - name: a\n    count: 2\n  - name: b\n").unwrap();
        let things = node.get("things").unwrap();
        let parsed: Vec<Thing> = from_node(things).unwrap();
        assert_eq!(parsed[1].name.value, "b");
        assert_eq!(parsed[1].name.loc, Loc { line: 4, col: 11 });
        assert_eq!(parsed[0].count, 2);
    }

    #[test]
    fn errors_point_at_the_innermost_node() {
        let node = parse("name: a\ncount: lots\n").unwrap();
        let err = from_node::<Thing>(&node).unwrap_err();
        assert_eq!(err.loc, Some(Loc { line: 2, col: 8 }));
        assert!(err.message.contains("expected u32"), "{}", err.message);

        let node = parse("name: a\ncuont: 1\n").unwrap();
        let err = from_node::<Thing>(&node).unwrap_err();
        assert_eq!(err.loc, Some(Loc { line: 2, col: 1 }));
        assert_eq!(err.message, "unknown field `cuont` (did you mean `count`?)");
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let d = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(d.loc.line >= 1, "{d:?}");
        assert!(d.message.starts_with("invalid YAML"), "{}", d.message);
    }
}
