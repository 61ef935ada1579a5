//! Self-tests of `proxy`.

use super::*;

/// Past this, a test waiting for bytes or a close has hung (not a timing assertion).
const HUNG: Duration = Duration::from_secs(30);
/// How long a test watches a stalled direction stay silent.
const QUIET: Duration = Duration::from_millis(300);

/// A server echoing every connection; each chunk it receives also goes to the receiver.
async fn echo() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("echo port");
    let (heard, hearing) = mpsc::unbounded_channel();
    let addr = listener.local_addr().expect("echo address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let heard = heard.clone();
            tokio::spawn(async move {
                let mut chunk = vec![0; CHUNK];
                while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                    let _ = heard.send(chunk[..n].to_vec());
                    if stream.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, hearing)
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connects")
}

/// Reads exactly `n` bytes.
async fn receive(stream: &mut (impl AsyncReadExt + Unpin), n: usize) -> Vec<u8> {
    let mut got = vec![0; n];
    let read = tokio::time::timeout(HUNG, stream.read_exact(&mut got)).await;
    read.expect("bytes within 30 s").expect("bytes");
    got
}

/// Whether nothing arrives on `stream` for a while.
async fn silent(stream: &mut (impl AsyncReadExt + Unpin)) -> bool {
    let read = tokio::time::timeout(QUIET, stream.read(&mut [0])).await;
    read.is_err()
}

async fn closed(stream: &mut TcpStream) -> bool {
    let read = tokio::time::timeout(HUNG, stream.read(&mut [0])).await;
    matches!(read.expect("an end within 30 s"), Ok(0) | Err(_))
}

async fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).await.expect("sent");
    receive(stream, bytes.len()).await
}

/// `n` bytes of counting words: a gap, a repeat or a swap shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n / 4).flat_map(|i| (i as u32).to_le_bytes()).collect()
}

#[tokio::test]
async fn bytes_pass_both_ways() {
    let (server, mut heard) = echo().await;
    let proxy = Proxy::start(server).await;
    let mut client = connect(proxy.addr()).await;
    assert_eq!(exchange(&mut client, b"hello").await, b"hello");
    assert_eq!(heard.recv().await.expect("heard"), b"hello");
}

#[tokio::test]
async fn a_stalled_direction_holds_its_bytes_intact_until_healed() {
    let (server, mut heard) = echo().await;
    let proxy = Proxy::start(server).await;
    for dir in [Dir::Forth, Dir::Back] {
        let (mut from_proxy, mut to_proxy) = connect(proxy.addr()).await.into_split();
        proxy.stall(dir);
        let mut late = connect(proxy.addr()).await;
        late.write_all(b"late").await.expect("sent");
        // Past a socket buffer's default size: what the proxy does not read waits in TCP.
        let (sent, payload) = (pattern(8 << 20), pattern(8 << 20));
        let writer = tokio::spawn(async move { to_proxy.write_all(&payload).await });
        assert!(
            silent(&mut from_proxy).await,
            "{dir:?} stalled, bytes came back"
        );
        let heard_any = heard.try_recv().is_ok();
        assert!(
            dir == Dir::Back || !heard_any,
            "the server heard a stalled link"
        );
        assert!(
            silent(&mut late).await,
            "a session opened while stalled passed"
        );
        proxy.heal();
        let got = receive(&mut from_proxy, sent.len()).await;
        assert!(got == sent, "{dir:?}: held bytes changed on their way");
        assert_eq!(receive(&mut late, 4).await, b"late");
        writer.await.expect("writer").expect("sent");
        while heard.try_recv().is_ok() {}
    }
}

#[tokio::test]
async fn a_reset_closes_sessions_and_refuses_new_ones_until_healed_as_a_drop_does() {
    let (server, _heard) = echo().await;
    let proxy = Proxy::start(server).await;
    let mut client = connect(proxy.addr()).await;
    assert_eq!(exchange(&mut client, b"x").await, b"x");
    proxy.reset();
    assert!(closed(&mut client).await, "a reset session still open");
    let mut refused = connect(proxy.addr()).await;
    assert!(closed(&mut refused).await, "a session opened under reset");
    proxy.heal();
    let mut healed = connect(proxy.addr()).await;
    assert_eq!(exchange(&mut healed, b"y").await, b"y");
    let addr = proxy.addr();
    drop(proxy);
    assert!(closed(&mut healed).await, "a session outlived its proxy");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "its port still open"
    );
}

#[tokio::test]
async fn a_delay_holds_each_chunk_at_least_that_long_in_order() {
    let (server, _heard) = echo().await;
    let proxy = Proxy::start(server).await;
    let delay = Duration::from_millis(150);
    proxy.delay(Dir::Forth, delay);
    proxy.delay(Dir::Back, delay);
    let mut client = connect(proxy.addr()).await;
    let started = std::time::Instant::now();
    assert_eq!(exchange(&mut client, b"ping").await, b"ping");
    let took = started.elapsed();
    assert!(
        took >= 2 * delay,
        "a round trip of {took:?}, delayed 2×{delay:?}"
    );
    let sent = pattern(64 * 1024);
    for piece in sent.chunks(1000) {
        client.write_all(piece).await.expect("sent");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let got = receive(&mut client, sent.len()).await;
    assert!(got == sent, "delayed bytes reordered");
}

#[tokio::test]
async fn net_faults_act_on_both_links_between_two_nodes() {
    let ((n1, mut heard1), (n2, mut heard2)) = (echo().await, echo().await);
    let mut net = Net::start(&[("n1", n1), ("n2", n2), ("n3", echo().await.0)]).await;
    let dial = format!("n2={},n3={}", net.via("n1", "n2"), net.via("n1", "n3"));
    assert_eq!(net.dial_env("n1"), dial);
    let mut n1_to_n2 = connect(net.via("n1", "n2")).await;
    let mut n2_to_n1 = connect(net.via("n2", "n1")).await;
    net.one_way("n1", "n2");
    n1_to_n2.write_all(b"a").await.expect("sent");
    assert_eq!(heard2.recv().await.expect("n2 hears n1"), b"a");
    assert!(silent(&mut n1_to_n2).await, "n1 heard n2 back");
    n2_to_n1.write_all(b"b").await.expect("sent");
    assert!(silent(&mut n2_to_n1).await, "n2 reached n1");
    assert!(heard1.try_recv().is_err(), "n1 heard n2");
    let said = net.describe();
    assert!(
        said.contains("P(n1→n2): n2→n1 stalled; P(n2→n1): n2→n1 stalled"),
        "{said}"
    );
    net.heal_all();
    assert_eq!(net.describe(), "no faults");
    assert_eq!(receive(&mut n1_to_n2, 1).await, b"a");
    assert_eq!(receive(&mut n2_to_n1, 1).await, b"b");
    assert_eq!(heard1.recv().await.expect("heard"), b"b");

    net.isolate("n3");
    net.delay("n1", "n2", Duration::from_millis(10));
    let said = net.describe();
    assert_eq!(said.matches("stalled").count(), 8, "{said}");
    assert_eq!(said.matches("delayed").count(), 4, "{said}");
    net.heal_all();
    net.cut("n1", "n2");
    n2_to_n1.write_all(b"c").await.expect("sent");
    assert!(silent(&mut n2_to_n1).await, "n2 reached n1 through a cut");
    assert!(heard1.try_recv().is_err(), "n1 heard n2 through a cut");
    net.heal("n1", "n2");
    assert_eq!(receive(&mut n2_to_n1, 1).await, b"c");
    net.reset("n1", "n2");
    assert!(closed(&mut n1_to_n2).await, "a reset link still open");

    net.add("n4", echo().await.0).await;
    let n4 = net.via("n1", "n4");
    assert_eq!(net.dial_env("n1"), format!("{dial},n4={n4}"));
    let mut n4_to_n1 = connect(net.via("n4", "n1")).await;
    assert_eq!(exchange(&mut n4_to_n1, b"d").await, b"d");
}
