//! Rows of a CSV stream with their line numbers, parsed by the file's format.

use super::{binance, FileParser, Format, Header, Options, Parsed};
use csv::ByteRecord;
use std::io::Read;

/// One data row: parsed, or the reason it was skipped.
#[derive(Debug)]
pub enum Row {
    Parsed(Parsed),
    Bad { line: u64, error: String },
}

/// A file being read: its header, its parser, and the rows still to come.
pub struct CsvRows<R: Read> {
    rdr: csv::Reader<R>,
    record: ByteRecord,
    /// A first line that was data, not a header (headerless Binance dumps).
    first: Option<ByteRecord>,
    pub parser: FileParser,
}

impl<R: Read> CsvRows<R> {
    /// Reads the header and picks the parser. Errors: an empty or unreadable file, an unknown
    /// format, a header without the format's columns.
    pub fn open(
        input: R,
        format: Option<Format>,
        opts: &Options,
        delimiter: u8,
    ) -> Result<CsvRows<R>, String> {
        // None of the named formats quotes its fields, so a stray `"` in a bad line must not
        // start a quoted field that swallows the lines after it; generic CSV follows RFC 4180.
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .quoting(format == Some(Format::Csv))
            .from_reader(input);
        let mut first = ByteRecord::new();
        loop {
            match rdr.read_byte_record(&mut first) {
                Ok(true) if is_blank(&first) => continue,
                Ok(true) => break,
                Ok(false) => return Err("empty file: no header".into()),
                Err(e) => return Err(format!("line 1: cannot read: {e}")),
            }
        }
        let names: Vec<String> = first
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let s = String::from_utf8_lossy(f);
                let s = if i == 0 { s.trim_start_matches('\u{feff}') } else { &s };
                s.trim().to_string()
            })
            .collect();
        let mut header = Header::new(names);
        let mut data_first = None;
        if matches!(format, None | Some(Format::Binance)) && binance::is_headerless(&header) {
            header = binance::dump_header(&header);
            data_first = Some(first);
        }
        let parser = FileParser::new(format, &header, opts)?;
        Ok(CsvRows { rdr, record: ByteRecord::new(), first: data_first, parser })
    }

    /// The next data row, `None` at the end. An error is a read failure (I/O, a corrupt
    /// compressed stream), after which nothing more can be read.
    pub fn next_row(&mut self) -> Result<Option<Row>, String> {
        if let Some(first) = self.first.take() {
            return Ok(Some(self.parse(&first)));
        }
        loop {
            match self.rdr.read_byte_record(&mut self.record) {
                Ok(false) => return Ok(None),
                Ok(true) if is_blank(&self.record) => continue,
                Ok(true) => {
                    let record = std::mem::take(&mut self.record);
                    let row = self.parse(&record);
                    self.record = record;
                    return Ok(Some(row));
                }
                Err(e) => {
                    let line = e.position().map_or(self.rdr.position().line(), |p| p.line());
                    return Err(format!("line {line}: cannot read: {e}"));
                }
            }
        }
    }

    fn parse(&mut self, record: &ByteRecord) -> Row {
        match self.parser.parse(record) {
            Ok(parsed) => Row::Parsed(parsed),
            Err(error) => Row::Bad { line: record.position().map_or(0, |p| p.line()), error },
        }
    }
}

fn is_blank(r: &ByteRecord) -> bool {
    r.is_empty() || (r.len() == 1 && r[0].iter().all(u8::is_ascii_whitespace))
}
