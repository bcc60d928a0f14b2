//! A sync run's time limit, armed only when it can matter.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

/// `future`'s output, or `None` once `limit` has passed (counted from
/// the call). Most sync runs answer at their first poll: the timer is
/// armed only for one that does not (a timer-wheel entry and a clone of
/// the runtime's handle per request otherwise, as `tokio::time::timeout`
/// makes on its call).
pub(crate) async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let started = tokio::time::Instant::now();
    let mut future = std::pin::pin!(future);
    if let Poll::Ready(out) = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
    {
        return Some(out);
    }
    match started.checked_add(limit) {
        Some(deadline) => tokio::time::timeout_at(deadline, future).await.ok(),
        // Past the clock's range: no limit in practice.
        None => Some(future.await),
    }
}

#[cfg(test)]
mod tests {
    use super::within;
    use std::time::Duration;

    /// Ready at once: the answer, whatever the limit. Pending past the
    /// limit: none, once the limit (counted from the call) has passed.
    /// Ready within it: the answer.
    #[tokio::test]
    async fn the_limit_counts_from_the_call_and_only_a_late_future_misses_it() {
        assert_eq!(within(Duration::ZERO, async { 7 }).await, Some(7));
        let started = std::time::Instant::now();
        let late = within(Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            7
        })
        .await;
        assert_eq!(late, None);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(50) && took < Duration::from_secs(5),
            "{took:?}"
        );
        let in_time = within(Duration::from_secs(5), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            7
        })
        .await;
        assert_eq!(in_time, Some(7));
        let endless = within(Duration::MAX, async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            7
        })
        .await;
        assert_eq!(endless, Some(7));
    }
}
