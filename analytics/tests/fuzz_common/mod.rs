//! The fuzzing harness of the `fuzz_*` test targets (also included by the executor's).
//!
//! A target is a proptest strategy of inputs and a check that must not panic. Inputs are mostly
//! valid encodings mutated the way a mutation fuzzer does (bit flips, interesting 8-byte words
//! such as NaN, infinities, `i64::MIN` or 2^53, inserted, removed, duplicated and truncated
//! spans; for JSON also whole values replaced by edge-case tokens, members removed, added or
//! duplicated, values nested past the parser's depth limit), plus some random bytes.
//!
//! `TAPEFLOW_FUZZ_CASES` sets the inputs per target (default [`DEFAULT_CASES`], the short run
//! of `cargo test`; `make fuzz` runs 1,000,000). A failing input is shrunk, reported and its
//! seed appended to `tests/fuzz-regressions/<target>.txt`, which is replayed first on every
//! run. With `--nocapture` each target prints how many inputs it ran and how long it took.

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use serde_json::Value;
use std::cell::Cell;
use std::fmt::Debug;
use std::time::Instant;

/// Inputs per target without `TAPEFLOW_FUZZ_CASES`.
pub const DEFAULT_CASES: u32 = 10_000;

/// Inputs per target: `TAPEFLOW_FUZZ_CASES` (underscores allowed) or [`DEFAULT_CASES`].
pub fn cases() -> u32 {
    match std::env::var("TAPEFLOW_FUZZ_CASES") {
        Ok(v) => {
            v.replace('_', "").parse().unwrap_or_else(|_| panic!("TAPEFLOW_FUZZ_CASES={v} is not a count"))
        }
        Err(_) => DEFAULT_CASES,
    }
}

/// Runs `check` on [`cases`] inputs of `strategy`; panics (failing the test) with the shrunk
/// input when a check panicked. `check` tells whether the input was accepted (decoded, valid),
/// which the report counts.
pub fn fuzz<S>(target: &str, strategy: S, check: impl Fn(&S::Value) -> bool)
where
    S: Strategy,
    S::Value: Debug,
{
    let file: &'static str = Box::leak(format!("tests/fuzz-regressions/{target}.txt").into_boxed_str());
    let config = Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        max_shrink_iters: 20_000,
        ..Config::default()
    };
    let inputs = Cell::new(0u64);
    let accepted = Cell::new(0u64);
    let start = Instant::now();
    let result = TestRunner::new(config).run(&strategy, |v| {
        inputs.set(inputs.get() + 1);
        if check(&v) {
            accepted.set(accepted.get() + 1);
        }
        Ok(())
    });
    let secs = start.elapsed().as_secs_f64();
    let n = inputs.get();
    if let Err(e) = result {
        panic!("fuzz {target}: {e}");
    }
    println!(
        "fuzz {target}: {n} inputs ({} accepted) in {secs:.1} s ({:.0} inputs/s), no panic",
        accepted.get(),
        n as f64 / secs.max(1e-9)
    );
}

// ---------------------------------------------------------------------------------------------
// Bytes
// ---------------------------------------------------------------------------------------------

/// 8-byte words that break decoders: special floats, integer limits, 2^53 and its neighbours,
/// small counts. Little-endian, as the binary forms are.
pub fn words() -> Vec<[u8; 8]> {
    let floats = [
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        5e-324,
        1.0,
        -1.0,
        0.5,
        9_007_199_254_740_992.0,
        9_007_199_254_740_994.0,
        1e300,
        -1e300,
        1e-300,
    ];
    let ints = [
        i64::MIN,
        i64::MAX,
        i64::MIN + 1,
        i64::MAX - 1,
        -1,
        0,
        1,
        2,
        3,
        7,
        8,
        40,
        255,
        256,
        65_535,
        i64::from(u32::MAX),
        i64::from(u32::MAX) + 1,
        i64::from(i32::MAX),
        1 << 53,
        (1 << 53) + 1,
        1 << 62,
        1 << 58,
    ];
    floats.iter().map(|f| f.to_le_bytes()).chain(ints.iter().map(|i| i.to_le_bytes())).collect()
}

/// One edit of a byte string; positions are taken modulo its length.
#[derive(Debug, Clone)]
pub enum ByteMutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    /// Overwrites (as far as the input reaches) 8 bytes with an interesting word.
    SetWord(Index, [u8; 8]),
    /// Overwrites 4 bytes with the low half of an interesting word.
    SetHalfWord(Index, [u8; 8]),
    Insert(Index, Vec<u8>),
    Remove(Index, u8),
    /// Copies a span to another position (repeated rows, repeated keys).
    Duplicate(Index, u8, Index),
    Truncate(Index),
    Append(Vec<u8>),
}

pub fn byte_mutation() -> impl Strategy<Value = ByteMutation> {
    let word = prop::sample::select(words());
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| ByteMutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteMutation::SetByte(i, b)),
        4 => (any::<Index>(), word.clone()).prop_map(|(i, w)| ByteMutation::SetWord(i, w)),
        1 => (any::<Index>(), word).prop_map(|(i, w)| ByteMutation::SetHalfWord(i, w)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| ByteMutation::Insert(i, b)),
        1 => (any::<Index>(), 1u8..64).prop_map(|(i, n)| ByteMutation::Remove(i, n)),
        1 => (any::<Index>(), 1u8..64, any::<Index>()).prop_map(|(i, n, j)| ByteMutation::Duplicate(i, n, j)),
        1 => any::<Index>().prop_map(ByteMutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..16).prop_map(ByteMutation::Append),
    ]
}

/// Applies `m` to `b`.
pub fn apply(b: &mut Vec<u8>, m: &ByteMutation) {
    let at = |i: &Index, b: &Vec<u8>| if b.is_empty() { 0 } else { i.index(b.len()) };
    match m {
        ByteMutation::FlipBit(i, bit) if !b.is_empty() => {
            let k = at(i, b);
            b[k] ^= 1 << bit;
        }
        ByteMutation::SetByte(i, v) if !b.is_empty() => {
            let k = at(i, b);
            b[k] = *v;
        }
        ByteMutation::SetWord(i, w) | ByteMutation::SetHalfWord(i, w) if !b.is_empty() => {
            let k = at(i, b);
            let n = if matches!(m, ByteMutation::SetWord(..)) { 8 } else { 4 };
            let end = (k + n).min(b.len());
            b[k..end].copy_from_slice(&w[..end - k]);
        }
        ByteMutation::Insert(i, v) => {
            let k = if b.is_empty() { 0 } else { i.index(b.len() + 1) };
            b.splice(k..k, v.iter().copied());
        }
        ByteMutation::Remove(i, n) if !b.is_empty() => {
            let k = at(i, b);
            let end = (k + usize::from(*n)).min(b.len());
            b.drain(k..end);
        }
        ByteMutation::Duplicate(i, n, j) if !b.is_empty() => {
            let k = at(i, b);
            let span: Vec<u8> = b[k..(k + usize::from(*n)).min(b.len())].to_vec();
            let to = j.index(b.len() + 1);
            b.splice(to..to, span);
        }
        ByteMutation::Truncate(i) if !b.is_empty() => {
            let k = at(i, b);
            b.truncate(k);
        }
        ByteMutation::Append(v) => b.extend_from_slice(v),
        _ => {}
    }
}

/// Valid encodings from `seeds`, as they are or mutated by up to 5 edits, and one input in
/// eight random bytes.
pub fn mutated_bytes(seeds: impl Strategy<Value = Vec<u8>> + Clone + 'static) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        1 => seeds.clone(),
        6 => (seeds, prop::collection::vec(byte_mutation(), 1..6)).prop_map(|(mut b, ms)| {
            for m in &ms {
                apply(&mut b, m);
            }
            b
        }),
        1 => prop::collection::vec(any::<u8>(), 0..400),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/// A JSON document that may be malformed where a mutation put a raw token, and may repeat
/// keys; rendered to text by [`Json::render`].
#[derive(Debug, Clone)]
pub enum Json {
    Null,
    Bool(bool),
    /// Written as is: a number, or any token.
    Raw(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn from_value(v: &Value) -> Json {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Raw(n.to_string()),
            Value::String(s) => Json::Str(s.clone()),
            Value::Array(a) => Json::Arr(a.iter().map(Json::from_value).collect()),
            Value::Object(o) => Json::Obj(o.iter().map(|(k, v)| (k.clone(), Json::from_value(v))).collect()),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Raw(s) => out.push_str(s),
            Json::Str(s) => out.push_str(&Value::String(s.clone()).to_string()),
            Json::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    fn count(&self) -> usize {
        1 + match self {
            Json::Arr(a) => a.iter().map(Json::count).sum(),
            Json::Obj(o) => o.iter().map(|(_, v)| v.count()).sum(),
            _ => 0,
        }
    }

    /// Node `i` in pre-order (the root is 0); `i` is below [`Json::count`].
    fn node(&mut self, i: usize) -> &mut Json {
        if i == 0 {
            return self;
        }
        let mut rest = i - 1;
        let children: Vec<&mut Json> = match self {
            Json::Arr(a) => a.iter_mut().collect(),
            Json::Obj(o) => o.iter_mut().map(|(_, v)| v).collect(),
            _ => Vec::new(),
        };
        for child in children {
            let c = child.count();
            if rest < c {
                return child.node(rest);
            }
            rest -= c;
        }
        unreachable!("node index beyond the tree")
    }
}

/// Tokens that break JSON readers: out-of-range and oddly written numbers, the special floats
/// JSON has no word for, bad escapes, truncated structure.
pub const TOKENS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.5",
    "-0.0",
    "1e400",
    "-1e400",
    "1e-400",
    "4294967295",
    "4294967296",
    "-4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "1.7976931348623157e308",
    "5e-324",
    "123456789012345678901234567890",
    "0.1234567890123456789012345678901",
    "1E2",
    "01",
    "1.",
    ".5",
    "+1",
    "0x10",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "\"\\x\"",
    "\"",
    "[",
    "{",
    "]",
    "}",
    ",",
    ":",
    "",
    "nul",
    "tru",
    "[1,]",
    "{\"a\":1,}",
];

/// A value a mutation puts in place of another.
pub fn json_atom(keys: &'static [String]) -> impl Strategy<Value = Json> {
    let key = key(keys);
    prop_oneof![
        1 => Just(Json::Null),
        1 => any::<bool>().prop_map(Json::Bool),
        4 => prop::sample::select(TOKENS).prop_map(|t| Json::Raw(t.to_string())),
        2 => (-5i64..2000).prop_map(|n| Json::Raw(n.to_string())),
        2 => (-10.0f64..1000.0).prop_map(|x| Json::Raw(format!("{x}"))),
        1 => any::<i64>().prop_map(|n| Json::Raw(n.to_string())),
        1 => any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| Json::Raw(format!("{x:e}"))),
        2 => key.prop_map(Json::Str),
        1 => "\\PC{0,12}".prop_map(Json::Str),
        1 => Just(Json::Arr(vec![])),
        1 => Just(Json::Obj(vec![])),
        1 => prop::collection::vec((-3i64..300).prop_map(|n| Json::Raw(n.to_string())), 1..4).prop_map(Json::Arr),
    ]
}

/// A key of `keys` (the ones a seed has, so mutations hit known fields), or a random one.
fn key(keys: &'static [String]) -> BoxedStrategy<String> {
    if keys.is_empty() {
        "\\PC{0,12}".boxed()
    } else {
        prop_oneof![5 => prop::sample::select(keys), 1 => "[a-z_.]{0,12}"].boxed()
    }
}

/// One edit of a JSON tree; the node is taken modulo the node count.
#[derive(Debug, Clone)]
pub enum JsonMutation {
    Replace(Index, Json),
    /// Removes a member of the node (an object's member, an array's element).
    Remove(Index, Index),
    /// Adds a member (or, in an array, an element).
    Add(Index, String, Json),
    /// Repeats a member, so an object has a key twice.
    Repeat(Index, Index),
    /// Wraps the node in arrays, past the reader's depth limit for deep counts.
    Nest(Index, u16),
}

pub fn json_mutation(keys: &'static [String]) -> impl Strategy<Value = JsonMutation> {
    prop_oneof![
        6 => (any::<Index>(), json_atom(keys)).prop_map(|(i, v)| JsonMutation::Replace(i, v)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| JsonMutation::Remove(i, j)),
        2 => (any::<Index>(), key(keys), json_atom(keys)).prop_map(|(i, k, v)| JsonMutation::Add(i, k, v)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| JsonMutation::Repeat(i, j)),
        1 => (any::<Index>(), prop_oneof![1u16..4, 120u16..140, 200u16..400])
            .prop_map(|(i, n)| JsonMutation::Nest(i, n)),
    ]
}

pub fn apply_json(doc: &mut Json, m: &JsonMutation) {
    let n = doc.count();
    match m {
        JsonMutation::Replace(i, v) => *doc.node(i.index(n)) = v.clone(),
        JsonMutation::Remove(i, j) => match doc.node(i.index(n)) {
            Json::Arr(a) if !a.is_empty() => {
                a.remove(j.index(a.len()));
            }
            Json::Obj(o) if !o.is_empty() => {
                o.remove(j.index(o.len()));
            }
            _ => {}
        },
        JsonMutation::Add(i, k, v) => match doc.node(i.index(n)) {
            Json::Arr(a) => a.push(v.clone()),
            Json::Obj(o) => o.push((k.clone(), v.clone())),
            _ => {}
        },
        JsonMutation::Repeat(i, j) => match doc.node(i.index(n)) {
            Json::Arr(a) if !a.is_empty() => {
                let e = a[j.index(a.len())].clone();
                a.push(e);
            }
            Json::Obj(o) if !o.is_empty() => {
                let e = o[j.index(o.len())].clone();
                o.push(e);
            }
            _ => {}
        },
        JsonMutation::Nest(i, depth) => {
            let node = doc.node(i.index(n));
            let mut v = std::mem::replace(node, Json::Null);
            for _ in 0..*depth {
                v = Json::Arr(vec![v]);
            }
            *node = v;
        }
    }
}

/// Every object key in `v`, once each, for [`mutated_json`]'s dictionary.
pub fn keys_of(v: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    if !out.contains(k) {
                        out.push(k.clone());
                    }
                    walk(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

/// A leaked dictionary, as the strategies want `'static` keys.
pub fn dictionary(keys: Vec<String>) -> &'static [String] {
    Box::leak(keys.into_boxed_slice())
}

/// JSON text from the documents of `seeds`: as they are, mutated as trees, mutated as trees
/// then as bytes (lossily back to text), and random text.
pub fn mutated_json(
    seeds: impl Strategy<Value = Value> + Clone + 'static,
    keys: &'static [String],
) -> BoxedStrategy<String> {
    let tree = (seeds.clone(), prop::collection::vec(json_mutation(keys), 1..5))
        .prop_map(|(v, ms)| {
            let mut doc = Json::from_value(&v);
            for m in &ms {
                apply_json(&mut doc, m);
            }
            doc.render()
        })
        .boxed();
    let bytes = (tree.clone(), prop::collection::vec(byte_mutation(), 1..4)).prop_map(|(s, ms)| {
        let mut b = s.into_bytes();
        for m in &ms {
            apply(&mut b, m);
        }
        String::from_utf8_lossy(&b).into_owned()
    });
    prop_oneof![
        1 => seeds.prop_map(|v| v.to_string()),
        8 => tree,
        2 => bytes,
        1 => "\\PC{0,80}",
    ]
    .boxed()
}
