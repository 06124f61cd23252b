//! The engine's object-store decorators over the fault-injecting store: what the
//! retrying store retries and how long it waits on an injected clock, and what the
//! instrumented store counts when calls fail.

mod retrying {
    use metapitr_core::retrying_object_store::*;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use futures::TryStreamExt;
    use metapitr_core::clock::{Clock, ManualClock};
    use metapitr_testkit::faulty_store::{FaultConfig, FaultyObjectStore, Op, OpFaults};
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::PutMode;
    use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutOptions};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            jitter_seed: None,
        }
    }

    /// A store failing every call of `op` before it reaches the memory store, the
    /// retrying store over it, and the manual clock it sleeps on.
    fn failing(
        op: Op,
        faults: OpFaults,
        attempts: u32,
        seed: u64,
    ) -> (
        Arc<FaultyObjectStore>,
        RetryingObjectStore,
        Arc<ManualClock>,
    ) {
        let faulty = Arc::new(FaultyObjectStore::new(
            Arc::new(InMemory::new()),
            FaultConfig::none().with(op, faults),
            1,
        ));
        let clock = ManualClock::new(0);
        let r = RetryingObjectStore::new(faulty.clone(), policy(attempts), clock.clone(), seed);
        (faulty, r, clock)
    }

    #[test]
    fn a_failing_store_is_called_attempts_times_with_capped_jittered_backoff() {
        rt().block_on(async {
            let (faulty, r, clock) = failing(Op::Put, OpFaults::NONE.with_fail_before(1.0), 5, 7);
            let e = r
                .put(&Path::from("a"), Bytes::from_static(b"x").into())
                .await
                .unwrap_err();
            assert!(metapitr_testkit::faulty_store::is_injected(&e), "{e}");
            assert_eq!(faulty.stats().op(Op::Put).calls, 5);
            let sleeps = clock.sleeps();
            assert_eq!(sleeps.len(), 4, "{sleeps:?}");
            // 100, 200, 400, 400 (capped) ms, each jittered into [half, all].
            for (s, full) in sleeps.iter().zip([100u64, 200, 400, 400]) {
                let full = Duration::from_millis(full);
                assert!(
                    *s >= full / 2 && *s <= full,
                    "{s:?} for a backoff of {full:?}"
                );
            }
            // No time passed on the simulated clock, and the same seed draws the same delays.
            assert_eq!(clock.now_ms(), 0);
            let (_, again, clock2) = failing(Op::Put, OpFaults::NONE.with_fail_before(1.0), 5, 7);
            let _ = again
                .put(&Path::from("a"), Bytes::from_static(b"x").into())
                .await;
            assert_eq!(clock2.sleeps(), sleeps);
            let (_, other, clock3) = failing(Op::Put, OpFaults::NONE.with_fail_before(1.0), 5, 8);
            let _ = other
                .put(&Path::from("a"), Bytes::from_static(b"x").into())
                .await;
            assert_ne!(clock3.sleeps(), sleeps, "another seed, other delays");
        });
    }

    #[test]
    fn a_call_that_fails_transiently_succeeds_on_a_later_attempt() {
        rt().block_on(async {
            let faults = OpFaults::NONE.with_fail_before(1.0).with_first_calls(2);
            let (faulty, r, clock) = failing(Op::Get, faults, 3, 1);
            let p = Path::from("k");
            r.put(&p, Bytes::from_static(b"hello").into())
                .await
                .unwrap();
            let body = r.get(&p).await.unwrap().bytes().await.unwrap();
            assert_eq!(body, &b"hello"[..]);
            assert_eq!(faulty.stats().op(Op::Get).failed_before, 2);
            assert_eq!(clock.sleeps().len(), 2);
        });
    }

    #[test]
    fn a_body_cut_part_way_is_retried_whole() {
        rt().block_on(async {
            let faults = OpFaults::NONE.with_fail_mid_stream(1.0).with_first_calls(1);
            let (faulty, r, _) = failing(Op::Get, faults, 2, 1);
            let p = Path::from("big");
            let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
            r.put(&p, data.clone().into()).await.unwrap();
            let body = r.get(&p).await.unwrap().bytes().await.unwrap();
            assert_eq!(body, data);
            assert_eq!(faulty.stats().op(Op::Get).failed_mid_stream, 1);
        });
    }

    #[test]
    fn a_failed_conditional_create_and_a_missing_object_are_not_retried() {
        rt().block_on(async {
            let (faulty, r, clock) = failing(Op::Put, OpFaults::NONE, 5, 1);
            let p = Path::from("once");
            let create = || PutOptions::from(PutMode::Create);
            r.put_opts(&p, Bytes::from_static(b"1").into(), create())
                .await
                .unwrap();
            let e = r
                .put_opts(&p, Bytes::from_static(b"2").into(), create())
                .await
                .unwrap_err();
            assert!(
                matches!(e, object_store::Error::AlreadyExists { .. }),
                "{e}"
            );
            assert_eq!(faulty.stats().op(Op::Put).calls, 2);
            let e = r.get(&Path::from("missing")).await.unwrap_err();
            assert!(matches!(e, object_store::Error::NotFound { .. }), "{e}");
            assert_eq!(faulty.stats().op(Op::Get).calls, 1);
            assert!(clock.sleeps().is_empty());
        });
    }

    #[test]
    fn lists_and_deletes_are_retried() {
        rt().block_on(async {
            let faults = OpFaults::NONE.with_fail_mid_stream(1.0).with_first_calls(2);
            let (faulty, r, _) = failing(Op::List, faults, 3, 1);
            for i in 0..10 {
                r.put(
                    &Path::from(format!("d/{i}")),
                    Bytes::from_static(b"x").into(),
                )
                .await
                .unwrap();
            }
            let listed: Vec<ObjectMeta> =
                r.list(Some(&Path::from("d"))).try_collect().await.unwrap();
            assert_eq!(listed.len(), 10);
            assert_eq!(faulty.stats().op(Op::List).faults(), 2);
            let faults = OpFaults::NONE.with_fail_before(1.0).with_first_calls(2);
            faulty.set_config(FaultConfig::none().with(Op::Delete, faults));
            r.delete(&Path::from("d/1")).await.unwrap();
            assert_eq!(faulty.stats().op(Op::Delete).faults(), 2);
            assert!(r.head(&Path::from("d/1")).await.is_err());
        });
    }
}

mod instrumented {
    use metapitr_core::instrumented_object_store::*;
    use std::sync::Arc;

    use bytes::Bytes;
    use futures::TryStreamExt;
    use metapitr_core::clock::ManualClock;
    use metapitr_testkit::faulty_store::{FaultConfig, FaultyObjectStore, Op, OpFaults};
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::ObjectStoreExt;
    use object_store::{ObjectMeta, ObjectStore, Result as OsResult};

    #[tokio::test]
    async fn requests_errors_and_bytes_are_counted_per_operation() {
        let faulty = Arc::new(FaultyObjectStore::new(
            Arc::new(InMemory::new()),
            FaultConfig::none(),
            1,
        ));
        let clock = ManualClock::new(0);
        let s = InstrumentedObjectStore::new(faulty.clone(), clock.clone());
        let p = Path::from("d/a");
        s.put(&p, Bytes::from_static(b"hello world").into())
            .await
            .unwrap();
        assert_eq!(
            s.get(&p).await.unwrap().bytes().await.unwrap(),
            &b"hello world"[..]
        );
        s.head(&p).await.unwrap();
        assert_eq!(s.get_range(&p, 0..5).await.unwrap(), &b"hello"[..]);
        let listed: Vec<ObjectMeta> = s.list(Some(&Path::from("d"))).try_collect().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(s.get(&Path::from("missing")).await.is_err());
        s.delete(&p).await.unwrap();
        faulty.set_config(FaultConfig::none().with(Op::Put, OpFaults::NONE.with_fail_before(1.0)));
        assert!(s.put(&p, Bytes::from_static(b"xyz").into()).await.is_err());

        let st = s.stats();
        let put = st.op(StoreOp::Put);
        assert_eq!((put.requests, put.errors, put.bytes_sent), (2, 1, 14));
        let get = st.op(StoreOp::Get);
        assert_eq!((get.requests, get.errors, get.bytes_received), (3, 1, 16));
        assert_eq!(st.op(StoreOp::Head).requests, 1);
        assert_eq!(st.op(StoreOp::List).requests, 1);
        assert_eq!(st.op(StoreOp::Delete).requests, 1);
        assert_eq!(st.total().requests, 8);
        assert_eq!(st.total().latency_ms, 0, "no time passed on the clock");
    }

    #[tokio::test]
    async fn a_listing_that_fails_part_way_counts_as_an_error() {
        let faulty = Arc::new(FaultyObjectStore::new(
            Arc::new(InMemory::new()),
            FaultConfig::none().with(Op::List, OpFaults::NONE.with_fail_mid_stream(1.0)),
            1,
        ));
        let s = InstrumentedObjectStore::new(faulty, ManualClock::new(0));
        for i in 0..4 {
            s.put(
                &Path::from(format!("l/{i}")),
                Bytes::from_static(b"x").into(),
            )
            .await
            .unwrap();
        }
        let r: OsResult<Vec<ObjectMeta>> = s.list(None).try_collect().await;
        assert!(r.is_err());
        let st = s.stats().op(StoreOp::List);
        assert_eq!((st.requests, st.errors), (1, 1));
    }
}
