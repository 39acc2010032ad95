//! Giving back a table's spare room. A `HashMap` keeps the capacity of its largest
//! moment: after a flood of made-up ids has come and gone, the tables keyed by peer
//! (discovery's peers and twins, delivery's addresses) would hold room for thousands of
//! entries for good (docs/SECURITY.md § 7).

use std::collections::HashMap;
use std::hash::Hash;

/// Below this capacity the room is not worth a reallocation.
const KEEP_ANYWAY: usize = 64;

/// Shrinks `map` to twice its entries when it uses less than a quarter of its room: a
/// table that shrinks back by half is left alone, so one that swings does not
/// reallocate at every swing.
pub(crate) fn shrink_if_sparse<K: Eq + Hash, V>(map: &mut HashMap<K, V>) {
    let capacity = map.capacity();
    if capacity > KEEP_ANYWAY && map.len() < capacity / 4 {
        map.shrink_to((map.len() * 2).max(KEEP_ANYWAY));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_emptied_after_a_flood_gives_its_room_back() {
        let mut map: HashMap<u32, [u8; 64]> = (0..4096).map(|i| (i, [0; 64])).collect();
        let full = map.capacity();
        map.retain(|k, _| *k < 10);
        shrink_if_sparse(&mut map);
        assert!(map.capacity() < full / 16, "{} of {full}", map.capacity());
        assert_eq!(map.len(), 10);
        assert!((0..10).all(|k| map.contains_key(&k)));
    }

    #[test]
    fn a_table_still_half_used_keeps_its_room() {
        let mut map: HashMap<u32, ()> = (0..4096).map(|i| (i, ())).collect();
        let full = map.capacity();
        map.retain(|k, _| *k < 2048);
        shrink_if_sparse(&mut map);
        // (Removed entries' slots count against the capacity until the next rehash.)
        assert!(map.capacity() > full / 2, "{} of {full}", map.capacity());
    }
}
