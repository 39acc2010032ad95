//! The fuzz bodies on stable, under proptest: random bytes, and the valid seeds with
//! random mutations (so the accepting paths run too). `cargo fuzz` (scripts/fuzz.sh)
//! runs the same bodies much longer, guided by coverage.

use fuzz_targets::seeds::seeds;
use fuzz_targets::TARGETS;
use proptest::prelude::*;

/// One edit of a seed.
#[derive(Debug, Clone)]
enum Edit {
    Flip(prop::sample::Index, u8),
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Remove(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, bit)| Edit::Flip(i, bit)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..8)
        )
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<prop::sample::Index>(), 1usize..8).prop_map(|(i, n)| Edit::Remove(i, n)),
        any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    let len = bytes.len();
    match edit {
        Edit::Insert(i, more) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, more.iter().copied());
        }
        _ if len == 0 => {}
        Edit::Flip(i, bit) => bytes[i.index(len)] ^= 1 << bit,
        Edit::Set(i, b) => bytes[i.index(len)] = *b,
        Edit::Remove(i, n) => {
            let at = i.index(len);
            bytes.drain(at..(at + n).min(len));
        }
        Edit::Truncate(i) => bytes.truncate(i.index(len)),
    }
}

fn run_all(bytes: &[u8]) {
    for (_, body) in TARGETS {
        body(bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes, to every target.
    #[test]
    fn random_bytes_never_break_a_target(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        run_all(&bytes);
    }

    /// Every target's valid seeds, a few edits away from valid.
    #[test]
    fn mutated_seeds_never_break_a_target(
        target in 0..TARGETS.len(),
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 0..4),
    ) {
        let (name, body) = TARGETS[target];
        let all = seeds(name);
        prop_assert!(!all.is_empty(), "{} has no seeds", name);
        let mut bytes = all[seed.index(all.len())].clone();
        for e in &edits {
            apply(&mut bytes, e);
        }
        body(&bytes);
    }

    /// Random JSON to the JSON targets, in each of their modes.
    #[test]
    fn random_json_never_breaks_a_target(json in json(), mode in any::<u8>()) {
        let text = json.to_string();
        run_all(text.as_bytes());
        let mut moded = vec![mode];
        moded.extend_from_slice(text.as_bytes());
        run_all(&moded);
    }
}

/// Any JSON; keys from the ones the formats use, so objects sometimes look right.
fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    const KEYS: [&str; 18] = [
        "lan_mesh",
        "ui",
        "desktop",
        "text",
        "name",
        "members",
        "address",
        "presence",
        "global_group_id",
        "round",
        "ranges",
        "want",
        "messages",
        "node_id",
        "probe",
        "allowed_subnets",
        "files",
        "path",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        "[0-9a-f:./]{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), inner, 0..6).prop_map(
                |m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            ),
        ]
    })
}
