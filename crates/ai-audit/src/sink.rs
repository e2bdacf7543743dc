//! Where records go: the [`Sink`] trait, and the stdout sink for a log shipper. The
//! embedded default, a hash-chained and signed file log, is [`FileSink`](crate::FileSink).

use bytes::Bytes;
use std::io::{self, Write};

/// A destination for audit records, driven by one writer thread
/// ([`AuditWriter`](crate::AuditWriter)).
///
/// Each record arrives as one JSON object (no newline). The writer calls [`append`] with
/// a batch, then [`sync`] before it acknowledges the batch; a record counts as written
/// only when `sync` returned `Ok` after it. `append` must leave the sink as it was when
/// it fails (the writer retries the same batch later), so a half-written batch never
/// becomes part of the log.
///
/// [`append`]: Sink::append
/// [`sync`]: Sink::sync
pub trait Sink: Send + 'static {
    /// Appends a batch of records.
    fn append(&mut self, batch: &[Bytes]) -> io::Result<()>;
    /// Makes everything appended so far durable (`fsync`).
    fn sync(&mut self) -> io::Result<()>;
    /// Housekeeping on time (rotation, timed checkpoints), called at least once a second.
    fn tick(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Ends the log cleanly (the file sink seals its segment).
    fn close(&mut self) -> io::Result<()> {
        self.sync()
    }
}

impl Sink for Box<dyn Sink> {
    fn append(&mut self, batch: &[Bytes]) -> io::Result<()> {
        (**self).append(batch)
    }
    fn sync(&mut self) -> io::Result<()> {
        (**self).sync()
    }
    fn tick(&mut self) -> io::Result<()> {
        (**self).tick()
    }
    fn close(&mut self) -> io::Result<()> {
        (**self).close()
    }
}

/// Records as JSON lines on standard output, for a log shipper (Fluent Bit, Vector,
/// a container runtime's log driver) that keeps them. No chain or signature: the store
/// the shipper writes to is the system of record.
#[derive(Debug, Default)]
pub struct StdoutSink {
    buf: Vec<u8>,
}

impl StdoutSink {
    /// A stdout sink.
    pub fn new() -> Self {
        StdoutSink::default()
    }
}

impl Sink for StdoutSink {
    fn append(&mut self, batch: &[Bytes]) -> io::Result<()> {
        self.buf.clear();
        for r in batch {
            self.buf.extend_from_slice(r);
            self.buf.push(b'\n');
        }
        io::stdout().lock().write_all(&self.buf)
    }

    fn sync(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}
