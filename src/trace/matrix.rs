//! A dense row-major matrix that serializes as nested JSON arrays (`[[..], [..]]`), so the trace
//! file stays readable from Python (`np.array(trace["moe_layers"][0]["router_logits"])`) while the
//! program keeps one allocation per matrix instead of one per token.

use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Matrix<T> {
    rows: usize,
    cols: usize,
    data: Vec<T>,
}

impl<T: Copy> Matrix<T> {
    /// Builds a matrix from row-major `data`; `data.len()` must equal `rows * cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<T>) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix data does not match its shape"
        );
        Self { rows, cols, data }
    }

    /// An empty 0×0 matrix: what a trace holds for data it was asked not to capture.
    pub fn empty() -> Self {
        Self {
            rows: 0,
            cols: 0,
            data: Vec::new(),
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn row(&self, r: usize) -> &[T] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn get(&self, r: usize, c: usize) -> T {
        self.data[r * self.cols + c]
    }

    pub fn iter_rows(&self) -> impl ExactSizeIterator<Item = &[T]> + '_ {
        (0..self.rows).map(move |r| self.row(r))
    }

    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// Appends `data.len() / cols` rows in place (an empty matrix takes `cols` as its width), so
    /// a trace that grows one generated token at a time costs its new rows, not a copy of all.
    pub fn append_rows(&mut self, cols: usize, data: &[T]) {
        if self.rows == 0 {
            self.cols = cols;
        }
        assert_eq!(self.cols, cols, "appended rows have another width");
        assert_eq!(
            data.len() % cols.max(1),
            0,
            "appended data is not whole rows"
        );
        self.data.extend_from_slice(data);
        self.rows += data.len() / cols.max(1);
    }
}

impl<T: Serialize + Copy> Serialize for Matrix<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.rows))?;
        for row in self.iter_rows() {
            seq.serialize_element(row)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de> + Copy> Deserialize<'de> for Matrix<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let nested: Vec<Vec<T>> = Vec::deserialize(deserializer)?;
        let rows = nested.len();
        let cols = nested.first().map_or(0, Vec::len);
        if let Some((i, row)) = nested.iter().enumerate().find(|(_, r)| r.len() != cols) {
            return Err(D::Error::custom(format!(
                "ragged matrix: row {i} has {} entries, row 0 has {cols}",
                row.len()
            )));
        }
        let data = nested.into_iter().flatten().collect();
        Ok(Self { rows, cols, data })
    }
}
