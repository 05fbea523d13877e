//! Column builders for the decoder: plain vectors, turned into Arrow arrays without a copy.
//!
//! Arrow's builders pay for generality on every append (a null-buffer state check, a
//! reserve and an offset conversion, out of line): about 60 instructions a string and 37 a
//! number in the profile, for 30 appends an event. These push into vectors sized for the
//! batch, keep validity as one byte a row (packed once at the end) and build each array
//! from the vectors. A row may skip a column: [`Texts::push_at`] and the like fill the rows
//! skipped with nulls when the next value comes, and `pad` at the end of the batch, so that
//! a field an event leaves out costs nothing in the row that leaves it out.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, ArrowPrimitiveType, BooleanArray, ListArray, MapArray, PrimitiveArray, StringArray,
    StructArray,
};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::DataType;

/// Validity, one byte a row, and how many rows are null.
#[derive(Debug, Default)]
struct Validity {
    valid: Vec<bool>,
    nulls: usize,
}

impl Validity {
    fn with_capacity(rows: usize) -> Self {
        Self {
            valid: Vec::with_capacity(rows),
            nulls: 0,
        }
    }

    #[inline]
    fn push(&mut self, valid: bool) {
        self.valid.push(valid);
        self.nulls += usize::from(!valid);
    }

    /// Nulls up to `rows` rows.
    #[inline]
    fn pad(&mut self, rows: usize) {
        self.nulls += rows.saturating_sub(self.valid.len());
        grow(&mut self.valid, rows, false);
    }

    fn truncate(&mut self, rows: usize) {
        if let Some(gone) = self.valid.get(rows..) {
            self.nulls -= gone.iter().filter(|v| !**v).count();
            self.valid.truncate(rows);
        }
    }

    /// The null buffer, none when every row is valid; leaves this empty.
    fn finish(&mut self) -> Option<NullBuffer> {
        let valid = std::mem::take(&mut self.valid);
        let nulls = std::mem::take(&mut self.nulls);
        (nulls > 0).then(|| NullBuffer::new(bits(&valid)))
    }
}

/// `v` grown to `len` with `value` (never shrunk). Gaps are mostly one row: a push, where
/// `resize` is a call to `memset`.
#[inline]
fn grow<T: Copy>(v: &mut Vec<T>, len: usize, value: T) {
    if len == v.len() + 1 {
        v.push(value);
    } else if len > v.len() {
        v.resize(len, value);
    }
}

/// Bools packed into Arrow's bitmap: eight at a time, one multiply gathering the low bit of
/// each byte of a word into its top byte (a bit at a time cost ten instructions a row).
fn bits(bools: &[bool]) -> BooleanBuffer {
    // Byte i of a word, 0 or 1, times bit 56 - 7i of the factor lands on bit 56 + i; every
    // other product lands below bit 56 or past bit 63, each on its own bit, so none carries.
    const GATHER: u64 = 0x0102_0408_1020_4080;
    let pack = |eight: &[bool; 8]| {
        let word = u64::from_le_bytes(eight.map(u8::from));
        (word.wrapping_mul(GATHER) >> 56) as u8
    };
    let (whole, rest) = bools.as_chunks::<8>();
    let mut out: Vec<u8> = whole.iter().map(pack).collect();
    if !rest.is_empty() {
        let mut last = [false; 8];
        last[..rest.len()].copy_from_slice(rest);
        out.push(pack(&last));
    }
    BooleanBuffer::new(Buffer::from_vec(out), 0, bools.len())
}

/// What a row that gives up, and the end of a batch, do to every column.
pub(super) trait Column {
    /// Keeps the first `rows` rows (all of them when there are fewer).
    fn truncate(&mut self, rows: usize);
    /// Nulls up to `rows` rows.
    fn pad(&mut self, rows: usize);
}

/// Where each row of a variable-length column ends (in bytes or items), and its validity.
#[derive(Debug)]
struct Ranges {
    offsets: Vec<i32>,
    validity: Validity,
}

impl Ranges {
    fn with_capacity(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            offsets,
            validity: Validity::with_capacity(rows),
        }
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// A row ending at `end`. A batch's column past 2 GiB (or 2 G items) is out of Arrow's
    /// 32-bit offsets, as it is for Arrow's own builders, which panic the same way.
    #[inline]
    fn push(&mut self, end: usize, valid: bool) {
        let end = i32::try_from(end).expect("a batch's column holds under 2 GiB");
        self.offsets.push(end);
        self.validity.push(valid);
    }

    /// Null rows up to `rows`, empty at `end`.
    fn pad(&mut self, rows: usize, end: usize) {
        if self.len() < rows {
            let end = i32::try_from(end).expect("a batch's column holds under 2 GiB");
            grow(&mut self.offsets, rows + 1, end);
            self.validity.pad(rows);
        }
    }

    /// Keeps the first `rows` rows; where their values end, when some were dropped.
    fn truncate(&mut self, rows: usize) -> Option<usize> {
        let &end = self.offsets.get(rows)?;
        self.offsets.truncate(rows + 1);
        self.validity.truncate(rows);
        Some(end as usize)
    }

    /// The offsets and nulls of the rows; leaves this empty.
    fn finish(&mut self) -> (OffsetBuffer<i32>, Option<NullBuffer>) {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        // SAFETY: the offsets start at 0 and each is the length of a buffer that only grows
        // (or is cut back to an earlier offset with them), so they never decrease.
        let offsets = unsafe { OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)) };
        (offsets, self.validity.finish())
    }
}

/// A UTF-8 column.
#[derive(Debug)]
pub(super) struct Texts {
    ranges: Ranges,
    values: Vec<u8>,
}

impl Texts {
    /// Room for `rows` values of `bytes` bytes in all.
    pub(super) fn with_capacity(rows: usize, bytes: usize) -> Self {
        Self {
            ranges: Ranges::with_capacity(rows),
            values: Vec::with_capacity(bytes),
        }
    }

    fn len(&self) -> usize {
        self.ranges.len()
    }

    #[inline]
    pub(super) fn push(&mut self, v: &str) {
        crate::bytes::append(&mut self.values, v.as_bytes());
        self.ranges.push(self.values.len(), true);
    }

    #[inline]
    pub(super) fn push_null(&mut self) {
        self.ranges.push(self.values.len(), false);
    }

    /// `v` as row `row`, the rows skipped before it null.
    #[inline]
    pub(super) fn push_at(&mut self, row: usize, v: &str) {
        if self.len() < row {
            self.pad(row);
        }
        self.push(v);
    }

    #[inline]
    pub(super) fn push_option(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.push(v),
            None => self.push_null(),
        }
    }

    /// The column; leaves this empty.
    pub(super) fn finish(&mut self) -> StringArray {
        let (offsets, nulls) = self.ranges.finish();
        let values = std::mem::take(&mut self.values);
        // SAFETY: each range between two offsets holds the bytes of one whole `&str`, so it
        // is valid UTF-8 (`Ranges` keeps the offsets in order, ending at `values.len()`).
        unsafe { StringArray::new_unchecked(offsets, Buffer::from_vec(values), nulls) }
    }
}

impl Column for Texts {
    fn truncate(&mut self, rows: usize) {
        if let Some(end) = self.ranges.truncate(rows) {
            self.values.truncate(end);
        }
    }

    fn pad(&mut self, rows: usize) {
        self.ranges.pad(rows, self.values.len());
    }
}

/// A column of `rows` copies of `s` (a batch's source name), built whole.
pub(super) fn repeated(s: &str, rows: usize) -> StringArray {
    let len = i32::try_from(s.len()).expect("a source name under 2 GiB");
    let end = i32::try_from(rows).ok().and_then(|r| r.checked_mul(len));
    end.expect("a batch's source column holds under 2 GiB");
    let offsets: Vec<i32> = (0..=rows as i32).map(|i| i * len).collect();
    // SAFETY: the offsets start at 0 and step by the length of `s`, which is valid UTF-8,
    // over `rows` copies of it.
    unsafe {
        let offsets = OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets));
        StringArray::new_unchecked(offsets, Buffer::from_vec(s.repeat(rows).into_bytes()), None)
    }
}

/// A column of lists of strings (`flags`) or of string maps (`attributes`): the items in
/// columns of their own, each row's a range of them.
#[derive(Debug)]
pub(super) struct Entries {
    ranges: Ranges,
    keys: Texts,
    /// A map's values; empty for a list.
    values: Texts,
}

impl Entries {
    pub(super) fn new() -> Self {
        Self {
            ranges: Ranges::with_capacity(0),
            keys: Texts::with_capacity(0, 0),
            values: Texts::with_capacity(0, 0),
        }
    }

    /// A row holding `items`.
    pub(super) fn push_list<'s>(&mut self, items: impl IntoIterator<Item = &'s str>) {
        items.into_iter().for_each(|v| self.keys.push(v));
        self.ranges.push(self.keys.len(), true);
    }

    /// A row holding the map `pairs`.
    pub(super) fn push_map<'s>(&mut self, pairs: impl IntoIterator<Item = (&'s str, &'s str)>) {
        for (k, v) in pairs {
            self.keys.push(k);
            self.values.push(v);
        }
        self.ranges.push(self.keys.len(), true);
    }

    #[inline]
    pub(super) fn push_null(&mut self) {
        self.ranges.push(self.keys.len(), false);
    }

    /// `(offsets, nulls)` of the rows; leaves them empty.
    fn rows(&mut self) -> (OffsetBuffer<i32>, Option<NullBuffer>) {
        self.ranges.finish()
    }

    /// The rows as a list column of type `list` (a `List` of `Utf8`).
    pub(super) fn finish_list(&mut self, list: &DataType) -> ListArray {
        let DataType::List(item) = list else {
            unreachable!("flags are a list")
        };
        let (offsets, nulls) = self.rows();
        ListArray::new(item.clone(), offsets, Arc::new(self.keys.finish()), nulls)
    }

    /// The rows as a map column of type `map` (a `Map` of `Utf8` to `Utf8`).
    pub(super) fn finish_map(&mut self, map: &DataType) -> MapArray {
        let DataType::Map(entries, ordered) = map else {
            unreachable!("attributes are a map")
        };
        let DataType::Struct(fields) = entries.data_type() else {
            unreachable!("map entries are a struct")
        };
        let (offsets, nulls) = self.rows();
        let columns: Vec<ArrayRef> =
            vec![Arc::new(self.keys.finish()), Arc::new(self.values.finish())];
        let entries_array = StructArray::new(fields.clone(), columns, None);
        MapArray::new(entries.clone(), offsets, entries_array, nulls, *ordered)
    }
}

impl Column for Entries {
    fn truncate(&mut self, rows: usize) {
        if let Some(end) = self.ranges.truncate(rows) {
            self.keys.truncate(end);
            self.values.truncate(end);
        }
    }

    fn pad(&mut self, rows: usize) {
        self.ranges.pad(rows, self.keys.len());
    }
}

/// A column of numbers (or timestamps).
#[derive(Debug)]
pub(super) struct Numbers<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    validity: Validity,
}

impl<T: ArrowPrimitiveType> Numbers<T> {
    pub(super) fn with_capacity(rows: usize) -> Self {
        Self {
            values: Vec::with_capacity(rows),
            validity: Validity::with_capacity(rows),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.values.len()
    }

    #[inline]
    pub(super) fn push(&mut self, v: T::Native) {
        self.values.push(v);
        self.validity.push(true);
    }

    #[inline]
    pub(super) fn push_option(&mut self, v: Option<T::Native>) {
        self.values.push(v.unwrap_or_default());
        self.validity.push(v.is_some());
    }

    /// `v` as row `row`, the rows skipped before it null.
    #[inline]
    pub(super) fn push_at(&mut self, row: usize, v: T::Native) {
        if self.values.len() < row {
            self.pad(row);
        }
        self.push(v);
    }

    /// The column; leaves this empty.
    pub(super) fn finish(&mut self) -> PrimitiveArray<T> {
        let nulls = self.validity.finish();
        let values = ScalarBuffer::from(std::mem::take(&mut self.values));
        PrimitiveArray::new(values, nulls)
    }
}

impl<T: ArrowPrimitiveType> Column for Numbers<T> {
    fn truncate(&mut self, rows: usize) {
        self.values.truncate(rows);
        self.validity.truncate(rows);
    }

    fn pad(&mut self, rows: usize) {
        if self.values.len() < rows {
            grow(&mut self.values, rows, T::Native::default());
            self.validity.pad(rows);
        }
    }
}

/// A column of booleans.
#[derive(Debug, Default)]
pub(super) struct Bools {
    values: Vec<bool>,
    validity: Validity,
}

impl Bools {
    pub(super) fn with_capacity(rows: usize) -> Self {
        Self {
            values: Vec::with_capacity(rows),
            validity: Validity::with_capacity(rows),
        }
    }

    #[inline]
    pub(super) fn push_option(&mut self, v: Option<bool>) {
        self.values.push(v.unwrap_or_default());
        self.validity.push(v.is_some());
    }

    /// `v` as row `row`, the rows skipped before it null.
    #[inline]
    pub(super) fn push_at(&mut self, row: usize, v: bool) {
        if self.values.len() < row {
            self.pad(row);
        }
        self.push_option(Some(v));
    }

    /// The column; leaves this empty.
    pub(super) fn finish(&mut self) -> BooleanArray {
        let nulls = self.validity.finish();
        let values = bits(&std::mem::take(&mut self.values));
        BooleanArray::new(values, nulls)
    }
}

impl Column for Bools {
    fn truncate(&mut self, rows: usize) {
        self.values.truncate(rows);
        self.validity.truncate(rows);
    }

    fn pad(&mut self, rows: usize) {
        if self.values.len() < rows {
            grow(&mut self.values, rows, false);
            self.validity.pad(rows);
        }
    }
}

#[cfg(test)]
#[path = "columns_tests.rs"]
mod tests;
