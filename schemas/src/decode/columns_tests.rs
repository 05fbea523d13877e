use super::*;
use arrow::array::{Array, Float64Array, Int64Array, StringBuilder};
use arrow::datatypes::{Float64Type, Int64Type};

#[test]
fn texts_equal_what_arrows_builder_makes() {
    let values = [
        Some("a"),
        None,
        Some(""),
        Some("ünï"),
        None,
        Some("long value"),
    ];
    let (mut ours, mut arrow) = (Texts::with_capacity(2, 1), StringBuilder::new());
    for round in 0..2 {
        for v in &values[round..] {
            ours.push_option(*v);
            arrow.append_option(*v);
        }
        let (a, b) = (ours.finish(), arrow.finish());
        assert_eq!(a, b);
        assert_eq!(a.null_count(), b.null_count());
    }
    let mut all = Texts::with_capacity(0, 0);
    all.push("x");
    assert!(all.finish().nulls().is_none(), "no nulls, no buffer");
    assert_eq!(all.finish().len(), 0);
}

#[test]
fn bits_pack_like_arrow_at_every_length_and_pattern() {
    for len in 0..70 {
        for seed in 0..8u64 {
            let bools: Vec<bool> = (0..len)
                .map(|i| ((i as u64 * 0x9e37_79b9) ^ seed).count_ones() % 2 == 1 || seed == 7)
                .collect();
            assert_eq!(
                bits(&bools),
                BooleanBuffer::from(bools.as_slice()),
                "{bools:?}"
            );
        }
    }
}

#[test]
fn lists_and_maps_equal_what_arrows_builders_make() {
    use crate::tables::{attributes_type, flags_type};
    use arrow::array::{ListBuilder, MapBuilder, MapFieldNames};
    let rows: [Option<&[(&str, &str)]>; 5] = [
        Some(&[("a", "1"), ("b", "")]),
        None,
        Some(&[]),
        Some(&[("ü", "v")]),
        None,
    ];
    let (mut list, mut map) = (Entries::new(), Entries::new());
    let mut want_list = ListBuilder::new(StringBuilder::new());
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "keys".into(),
        value: "values".into(),
    };
    let mut want_map = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
        .with_values_field(arrow::datatypes::Field::new("values", DataType::Utf8, true));
    for row in rows {
        match row {
            Some(pairs) => {
                list.push_list(pairs.iter().map(|p| p.0));
                map.push_map(pairs.iter().copied());
                for (k, v) in pairs {
                    want_list.values().append_value(k);
                    want_map.keys().append_value(k);
                    want_map.values().append_value(v);
                }
                want_list.append(true);
                want_map.append(true).unwrap();
            }
            None => {
                list.push_null();
                map.push_null();
                want_list.append(false);
                want_map.append(false).unwrap();
            }
        }
    }
    assert_eq!(list.finish_list(&flags_type()), want_list.finish());
    let map = map.finish_map(&attributes_type());
    assert_eq!(map.data_type(), &attributes_type());
    assert_eq!(map, want_map.finish());
    assert_eq!(
        list.finish_list(&flags_type()).len(),
        0,
        "finish leaves it empty"
    );
}

#[test]
fn truncated_columns_equal_columns_never_given_the_rows() {
    let mut t = Texts::with_capacity(0, 0);
    let mut n = Numbers::<Float64Type>::with_capacity(0);
    let mut e = Entries::new();
    for round in 0..3 {
        t.push_option(Some("keep"));
        t.push_null();
        n.push_option(None);
        e.push_map([("k", "v")]);
        e.push_null();
        let rows = 2 * (round + 1);
        t.push("gone");
        t.push_null();
        n.push(1.0);
        e.push_map([("gone", "x")]);
        t.truncate(rows);
        t.truncate(rows + 5);
        n.truncate(rows / 2);
        e.truncate(rows);
    }
    let want: Vec<Option<&str>> = [Some("keep"), None].repeat(3);
    let got = t.finish();
    assert_eq!(got, StringArray::from(want));
    assert_eq!(got.null_count(), 3);
    let nums = n.finish();
    assert_eq!((nums.len(), nums.null_count()), (3, 3));
    let map = e.finish_map(&crate::tables::attributes_type());
    assert_eq!(
        (map.len(), map.null_count(), map.entries().len()),
        (6, 3, 3)
    );
}

#[test]
fn skipped_rows_are_null() {
    let mut t = Texts::with_capacity(0, 0);
    let mut n = Numbers::<Float64Type>::with_capacity(0);
    let mut b = Bools::with_capacity(0);
    let mut e = Entries::new();
    t.push_at(2, "c");
    t.push_at(3, "d");
    t.pad(5);
    n.push_at(1, 1.0);
    n.pad(3);
    b.push_at(0, true);
    b.pad(2);
    e.push_list(["x"]);
    e.pad(3);
    let want = StringArray::from(vec![None, None, Some("c"), Some("d"), None]);
    assert_eq!(t.finish(), want);
    assert_eq!(n.finish(), Float64Array::from(vec![None, Some(1.0), None]));
    assert_eq!(b.finish(), BooleanArray::from(vec![Some(true), None]));
    let list = e.finish_list(&crate::tables::flags_type());
    assert_eq!((list.len(), list.null_count()), (3, 2));
}

#[test]
fn repeated_equals_a_built_column() {
    for rows in [0, 1, 5] {
        let want = StringArray::from(vec!["file:x.ndjson"; rows]);
        assert_eq!(repeated("file:x.ndjson", rows), want);
    }
    assert_eq!(repeated("", 3), StringArray::from(vec![""; 3]));
}

#[test]
fn numbers_and_bools_equal_arrays_from_options() {
    let v = [Some(1.5), None, Some(0.0), None];
    let mut n = Numbers::<Float64Type>::with_capacity(1);
    v.iter().for_each(|x| n.push_option(*x));
    assert_eq!(n.finish(), Float64Array::from(v.to_vec()));
    n.push(2.0);
    assert!(n.finish().nulls().is_none());
    let b = [Some(true), None, Some(false)];
    let mut ours = Bools::with_capacity(0);
    b.iter().for_each(|x| ours.push_option(*x));
    assert_eq!(ours.finish(), BooleanArray::from(b.to_vec()));
}

/// Rows written at positions with random gaps, rows given up (truncated) and pads, in
/// columns sized for the batch, smaller and empty: the same array as the options.
#[test]
fn numbers_with_gaps_and_truncation_equal_arrays_from_options() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rng = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for capacity in [0, 7, 300] {
        let mut n = Numbers::<Int64Type>::with_capacity(capacity);
        for _ in 0..4 {
            let mut want: Vec<Option<i64>> = Vec::new();
            for _ in 0..300 {
                let row = want.len() + rng(3) as usize;
                match rng(10) {
                    0 => {
                        let keep = row.saturating_sub(rng(4) as usize).min(want.len());
                        n.truncate(keep);
                        want.truncate(keep);
                    }
                    1 => {
                        n.pad(row);
                        want.resize(row.max(want.len()), None);
                    }
                    _ => {
                        let v = rng(1000) as i64;
                        n.push_at(row, v);
                        want.resize(row, None);
                        want.push(Some(v));
                    }
                }
                assert_eq!(n.len(), want.len());
            }
            assert_eq!(n.finish(), Int64Array::from(want));
        }
    }
}
