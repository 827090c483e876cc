//! AllowLayer's cost per request: off, on with the peer allowed (a list the size of
//! WeChat's), through a trusted proxy (X-Forwarded-For with two hops), and refused (counted,
//! not logged: no subscriber), against the bare inner service; and `IpSet::contains` alone.
//! Requests are made outside the timed part, so `allow/*` minus the matching baseline is
//! what the layer adds.
//!
//! ```text
//! cargo bench --bench allow
//! ```

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Layer, Service, service_fn};
use tower_wechat::AllowLayer;
use tower_wechat::allow::{IpNet, IpSet};

async fn answer(_request: Request<()>) -> Result<Response<()>, Infallible> {
    Ok(Response::new(()))
}

/// A list shaped like WeChat's: 200 ranges of /24 to /28 spread over a few /8s, and
/// 127.0.0.1.
fn wechat_sized() -> IpSet {
    let mut set: IpSet = (0..200u32)
        .map(|n| {
            let address = std::net::Ipv4Addr::from(0x6500_0000 + n * 0x0001_1300);
            IpNet::new(address.into(), 24 + (n % 5) as u8).unwrap()
        })
        .collect();
    set.extend([IpNet::host("127.0.0.1".parse().unwrap())]);
    set
}

/// A request from `peer` carrying `forwarded`, as the server hands it on.
fn request(peer: SocketAddr, forwarded: Option<&'static str>) -> Request<()> {
    let mut request = Request::post("/wechat").body(()).unwrap();
    request.extensions_mut().insert(peer);
    if let Some(value) = forwarded {
        request
            .headers_mut()
            .insert("x-forwarded-for", value.parse().unwrap());
    }
    request
}

/// Times `service` on requests made outside the timed part; the futures here are ready at
/// once.
fn bench<S, B>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut service: S,
    peer: SocketAddr,
    forwarded: Option<&'static str>,
) where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    group.bench_function(name, |b| {
        b.iter_batched(
            || request(peer, forwarded),
            |request| black_box(service.call(request).now_or_never().unwrap().unwrap()),
            BatchSize::SmallInput,
        )
    });
}

fn benches(c: &mut Criterion) {
    let list = wechat_sized();
    assert_eq!(list.len(), 201);
    let loopback: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let stranger: SocketAddr = "198.51.100.1:40000".parse().unwrap();

    let mut group = c.benchmark_group("allow");
    bench(
        &mut group,
        "baseline_inner_service",
        service_fn(answer),
        loopback,
        None,
    );
    let off = AllowLayer::off().layer(service_fn(answer));
    bench(&mut group, "off", off, loopback, None);
    let on = AllowLayer::new(list.clone()).layer(service_fn(answer));
    bench(&mut group, "peer_allowed", on.clone(), loopback, None);
    bench(&mut group, "peer_refused", on, stranger, None);
    let proxied = AllowLayer::new(list.clone())
        .trusted_proxies(IpSet::parse("127.0.0.0/8, 10.0.0.0/8").unwrap())
        .layer(service_fn(answer));
    let first = list.iter().next().unwrap().network();
    let header: &'static str =
        Box::leak(format!("203.0.113.9, {first}, 10.1.2.3").into_boxed_str());
    bench(
        &mut group,
        "baseline_with_header",
        service_fn(answer),
        loopback,
        Some(header),
    );
    bench(
        &mut group,
        "forwarded_allowed",
        proxied,
        loopback,
        Some(header),
    );
    group.finish();

    let mut group = c.benchmark_group("ipset");
    let hit: IpAddr = "127.0.0.1".parse().unwrap();
    let miss: IpAddr = "198.51.100.1".parse().unwrap();
    group.bench_function("contains_hit_201", |b| {
        b.iter(|| list.contains(black_box(hit)))
    });
    group.bench_function("contains_miss_201", |b| {
        b.iter(|| list.contains(black_box(miss)))
    });
    group.finish();
}

criterion_group!(allow, benches);
criterion_main!(allow);
