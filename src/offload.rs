//! Blocking work (the token, SQLite, CMS) from async code. Each piece normally goes to
//! tokio's blocking pool, so an async worker never waits on it. A whole request can instead
//! be run on one blocking thread ([`in_place`]): the pieces it awaits then run where they
//! are, sparing two thread switches per piece (an enrollment has six: decrypt, look up,
//! reserve, sign, record, reply).

use std::cell::Cell;
use std::future::Future;

thread_local! {
    /// Set while this thread runs a request in place: blocking work runs here.
    static IN_PLACE: Cell<bool> = const { Cell::new(false) };
}

/// Clears the mark when the request ends, panicking or not.
struct Mark;

impl Mark {
    fn set() -> Mark {
        IN_PLACE.with(|m| m.set(true));
        Mark
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        IN_PLACE.with(|m| m.set(false));
    }
}

/// Whether this thread runs a request in place.
fn here() -> bool {
    IN_PLACE.with(Cell::get)
}

/// Run `f`, which blocks, without blocking an async worker: on tokio's blocking pool, or
/// right here when this thread runs a request in place. The error is a panic in `f`.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if here() {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f).await
}

/// Run `request` to its end on one blocking thread, its blocking work in place. What it
/// awaits besides (timers, sockets, other tasks) is still driven by the runtime this is
/// called from, whose thread stays free. The error is a panic in `request`.
pub async fn in_place<T: Send + 'static>(
    request: impl Future<Output = T> + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _mark = Mark::set();
        runtime.block_on(request)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread() -> std::thread::ThreadId {
        std::thread::current().id()
    }

    #[tokio::test]
    async fn pieces_of_a_request_run_in_place_and_others_do_not() {
        let me = thread();
        // Outside a request: a blocking thread of the pool.
        let elsewhere = blocking(thread).await.unwrap();
        assert_ne!(elsewhere, me);
        // Inside one: every piece on the request's own thread, timers still running.
        let (request, pieces) = in_place(async {
            let a = blocking(thread).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let b = blocking(thread).await.unwrap();
            (thread(), [a, b])
        })
        .await
        .unwrap();
        assert_ne!(request, me);
        assert_eq!(pieces, [request, request]);
        // The mark does not outlive the request, even one that panics.
        assert!(in_place(async { panic!("boom") }).await.is_err());
        assert!(!here());
        let after = tokio::task::spawn_blocking(here).await.unwrap();
        assert!(!after);
    }
}
