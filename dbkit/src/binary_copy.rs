//! Rows for `COPY … FROM STDIN BINARY`, handed to the connection in large chunks.
//!
//! tokio-postgres's `BinaryCopyInWriter` passes the connection a message every 4 KiB: for a
//! million ticks that is some 25,000 messages, each a wakeup of the connection's task on another
//! thread, which cost the feeder about a fifth of its CPU (measured with perf). This writer
//! encodes each value with the crate's own `ToSql` and sends [`CHUNK`] bytes at a time. The
//! framing is the documented binary COPY format: a signature, flags and an empty extension
//! area; per row a field count, then per field its length (-1 for NULL) and its bytes; a
//! trailer of -1.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use std::pin::Pin;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::CopyInSink;

/// Bytes sent to the connection at a time: large enough that a 10,000-tick batch (about 1 MB)
/// is four messages, small enough that the server parses one while the next is encoded.
pub const CHUNK: usize = 256 * 1024;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

pub struct BinaryCopyRows {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    buf: BytesMut,
    types: &'static [Type],
}

impl BinaryCopyRows {
    /// Starts the stream on `sink`, a COPY whose columns have `types`, in order.
    pub fn new(sink: CopyInSink<Bytes>, types: &'static [Type]) -> BinaryCopyRows {
        let mut buf = BytesMut::with_capacity(CHUNK + 4096);
        buf.put_slice(SIGNATURE);
        buf.put_i32(0); // flags: no OIDs
        buf.put_i32(0); // header extension length
        BinaryCopyRows { sink: Box::pin(sink), buf, types }
    }

    /// Adds one row, one value per column.
    pub async fn write(&mut self, values: &[&(dyn ToSql + Sync)]) -> anyhow::Result<()> {
        encode_row(&mut self.buf, self.types, values)?;
        if self.buf.len() >= CHUNK {
            self.sink.send(self.buf.split().freeze()).await?;
            // The next chunk's room at once: grown from what split() left, the buffer would be
            // reallocated and copied five times over on its way to CHUNK.
            self.buf.reserve(CHUNK + 4096);
        }
        Ok(())
    }

    /// Sends the rest and the trailer, and ends the COPY; returns the rows the server stored.
    pub async fn finish(mut self) -> Result<u64, tokio_postgres::Error> {
        self.buf.put_i16(-1);
        self.sink.send(self.buf.split().freeze()).await?;
        self.sink.as_mut().finish().await
    }
}

/// Appends one row's binary COPY encoding to `buf`.
fn encode_row(buf: &mut BytesMut, types: &[Type], values: &[&(dyn ToSql + Sync)]) -> anyhow::Result<()> {
    anyhow::ensure!(
        values.len() == types.len(),
        "a COPY row of {} values for {} columns",
        values.len(),
        types.len()
    );
    buf.put_i16(values.len() as i16);
    for (value, ty) in values.iter().zip(types) {
        let at = buf.len();
        buf.put_i32(0); // the length, set once the value is written
        let len = match value
            .to_sql_checked(ty, buf)
            .map_err(|e| anyhow::anyhow!("encoding a {ty} for COPY: {e}"))?
        {
            IsNull::Yes => {
                buf.truncate(at + 4);
                -1
            }
            IsNull::No => i32::try_from(buf.len() - at - 4).map_err(|_| {
                anyhow::anyhow!("a {ty} value of {} bytes is too long for COPY", buf.len() - at - 4)
            })?,
        };
        buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_its_field_count_then_each_length_and_bytes_with_minus_one_for_null() {
        let mut buf = BytesMut::new();
        let none: Option<&str> = None;
        encode_row(&mut buf, &[Type::INT4, Type::TEXT, Type::TEXT], &[&7i32, &"ab", &none]).unwrap();
        let expected: Vec<u8> = [
            &3i16.to_be_bytes()[..],
            &4i32.to_be_bytes(),
            &7i32.to_be_bytes(),
            &2i32.to_be_bytes(),
            b"ab",
            &(-1i32).to_be_bytes(),
        ]
        .concat();
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn a_value_of_the_wrong_type_or_a_missing_column_is_refused() {
        let mut buf = BytesMut::new();
        let e = encode_row(&mut buf, &[Type::INT4], &[&"x"]).unwrap_err();
        assert!(e.to_string().contains("encoding a int4"), "{e}");
        let e = encode_row(&mut buf, &[Type::INT4, Type::TEXT], &[&1i32]).unwrap_err();
        assert!(e.to_string().contains("1 values for 2 columns"), "{e}");
    }
}
