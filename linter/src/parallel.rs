//! Work on every core. The calling thread is one of the workers, so a small input pays for
//! one thread start at most (a pre-commit run is a few milliseconds all told).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The cores to use, read once: the standard library reads the cgroup's CPU limit from files
/// at every call.
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs `work` on the calling thread and on up to `cores() - 1` more (no more than `at_most`
/// in all), and returns what each run returned. A panic in any run is raised again here.
pub fn on_every_core<R: Send>(at_most: usize, work: impl Fn() -> R + Sync) -> Vec<R> {
    on_threads(cores().min(at_most), work)
}

/// Runs `work` on `threads` threads in all (at least the calling thread), and returns what
/// each run returned. A panic in any run is raised again here.
pub fn on_threads<R: Send>(threads: usize, work: impl Fn() -> R + Sync) -> Vec<R> {
    let helpers = threads.saturating_sub(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..helpers).map(|_| scope.spawn(&work)).collect();
        let mut done = vec![work()];
        done.extend(handles.into_iter().map(|handle| {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }));
        done
    })
}

/// `work` on every item, on as many threads as there are cores (items are handed out one at a
/// time, so uneven items even out); results in item order.
pub fn map<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let done = on_every_core(items.len(), || {
        // Room for every result: a worker may take them all, and results are large (growing
        // the list would copy them).
        let mut done = Vec::with_capacity(items.len());
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            done.push((i, work(item)));
        }
        done
    });
    let mut slots: Vec<Option<R>> = items.iter().map(|_| None).collect();
    for (i, result) in done.into_iter().flatten() {
        slots[i] = Some(result);
    }
    slots.into_iter().flatten().collect()
}

/// `work` on every item, like [`map`], but handed out in runs of `per_run` items: for items
/// too small to be worth handing out one at a time.
pub fn map_in_runs<T: Sync, R: Send>(
    items: &[T],
    per_run: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let runs: Vec<&[T]> = items.chunks(per_run.max(1)).collect();
    map(&runs, |run| run.iter().map(&work).collect::<Vec<R>>())
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_once_per_core_up_to_the_bound() {
        let runs = AtomicUsize::new(0);
        let done = on_every_core(usize::MAX, || runs.fetch_add(1, Ordering::Relaxed));
        assert_eq!(done.len(), cores());
        assert_eq!(runs.load(Ordering::Relaxed), cores());
        assert_eq!(on_every_core(1, || 7), [7]);
        // Even a bound of 0 runs the work on the calling thread.
        assert_eq!(on_every_core(0, || 7), [7]);
    }

    #[test]
    fn runs_on_as_many_threads_as_asked_whatever_the_cores() {
        let threads = std::sync::Mutex::new(std::collections::HashSet::new());
        let runs = on_threads(cores() + 2, || {
            threads.lock().unwrap().insert(std::thread::current().id())
        });
        assert_eq!(runs.len(), cores() + 2);
        assert_eq!(
            threads.lock().unwrap().len(),
            cores() + 2,
            "one thread each"
        );
        assert_eq!(on_threads(0, || 7), [7]);
    }

    #[test]
    fn map_keeps_item_order_whichever_thread_ran_an_item() {
        let items: Vec<usize> = (0..1000).collect();
        let squares = map(&items, |&i| {
            // Uneven work, so that the threads interleave.
            if i % 7 == 0 {
                std::thread::yield_now();
            }
            i * i
        });
        assert_eq!(squares, items.iter().map(|i| i * i).collect::<Vec<_>>());
        assert!(map(&[] as &[usize], |&i| i).is_empty());
    }

    #[test]
    fn map_in_runs_keeps_item_order_across_runs() {
        let items: Vec<usize> = (0..1000).collect();
        let squares: Vec<usize> = items.iter().map(|i| i * i).collect();
        // Runs that divide the items evenly, a short last run, one run for all, one per item.
        for per_run in [8, 7, 1000, 1] {
            assert_eq!(
                map_in_runs(&items, per_run, |&i| i * i),
                squares,
                "{per_run}"
            );
        }
        assert!(map_in_runs(&[] as &[usize], 7, |&i| i).is_empty());
    }
}
