//! MQTT transport (rumqttc): one connection per device, or `--connections N` multiplexing
//! device `d` onto connection `d % N`.
//!
//! Each connection has two tasks. The publisher takes jobs from its queue, remembers them in
//! FIFO order and hands them to rumqttc. The event-loop task drives the connection: rumqttc
//! reports `Outgoing::Publish(pkid)` in the order the publishes were queued, which pairs each
//! packet id with the oldest remembered job; a `PUBACK(pkid)` then acknowledges exactly that
//! job's lines and records its latency. QoS 0 has no acknowledgement: a message counts once
//! rumqttc has written it to the socket, and the report says so.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS, Transport};
use tokio::sync::mpsc;

use crate::cli::MqttArgs;
use crate::generator::{GenConfig, Layout};
use crate::run::{Job, Run};
use crate::stats::{RunInfo, Stats, UnitMeta};
use crate::verify::VerifyTarget;

/// Consecutive connection errors after which a connection gives up.
const MAX_CONSECUTIVE_ERRORS: u32 = 5;
/// Largest packet either way: 100 lines of ~250 bytes need more than rumqttc's 10 KiB default.
const MAX_PACKET: usize = 16 * 1024 * 1024;

/// Jobs handed to rumqttc and not yet acknowledged, in order.
#[derive(Default)]
struct Inflight {
    /// Queued to rumqttc, no packet id yet.
    queued: VecDeque<(Instant, UnitMeta)>,
    /// Sent with a packet id, waiting for PUBACK; insertion order kept for reconnects.
    sent: HashMap<u16, (Instant, UnitMeta)>,
    sent_order: VecDeque<u16>,
}

impl Inflight {
    fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.sent.is_empty()
    }

    /// After a connection error rumqttc re-sends its unacknowledged publishes in packet-id
    /// order, reporting each as a new `Outgoing::Publish`: put them back in front of the queue.
    fn requeue_sent(&mut self) {
        while let Some(pkid) = self.sent_order.pop_back() {
            if let Some(e) = self.sent.remove(&pkid) {
                self.queued.push_front(e);
            }
        }
    }
}

pub async fn run(args: MqttArgs) -> anyhow::Result<i32> {
    let w = &args.work;
    w.validate()?;
    let db = w.db.clone().unwrap_or_else(|| "telemetry".into());
    if args.lines_per_message == 0 {
        bail!("--lines-per-message must be at least 1");
    }
    let qos = if args.qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
    let conns = if args.connections == 0 { w.devices } else { args.connections.min(w.devices) };
    let ca = match (&args.tls, &args.ca_file) {
        (true, Some(p)) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        (true, None) => bail!("--tls needs --ca-file (the CA that signed the server's certificate)"),
        _ => None,
    };
    let cfg = GenConfig {
        kind: w.schema,
        seed: w.seed,
        devices: w.devices,
        start_ns: w.start_ns()?,
        interval_ns: w.interval.as_nanos() as i64,
        layout: Layout::Message(args.lines_per_message),
        limit: w.points,
        gzip: false,
        sample_every: 64,
    };
    // Topics per (device, measurement), rendered once.
    let ms = w.schema.measurements();
    let template = args.topic.clone();
    let topics: Arc<Vec<String>> = Arc::new(
        (0..w.devices)
            .flat_map(|d| {
                let name = w.schema.device_name(d);
                let template = template.clone();
                ms.iter().map(move |m| template.replace("{device}", &name).replace("{measurement}", m))
            })
            .collect(),
    );

    let mut run = Run::start(cfg, w.clone(), conns as usize * 2 + 16);
    let stats = run.stats.clone();
    let mut outs = Vec::new();
    let mut publishers = Vec::new();
    let mut loops = Vec::new();
    for c in 0..conns {
        let id = if args.connections == 0 {
            format!("{}{}", args.client_id_prefix, w.schema.device_name(c))
        } else {
            format!("{}loadgen-{c}", args.client_id_prefix)
        };
        let mut opts = MqttOptions::new(id, args.host.clone(), args.port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_inflight(args.inflight.max(1))
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        if let Some(u) = &args.username {
            opts.set_credentials(u.clone(), args.password.clone().unwrap_or_default());
        }
        if let Some(ca) = &ca {
            opts.set_transport(Transport::tls(ca.clone(), None, None));
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 8);
        let (tx, mut rx) = mpsc::channel::<Job>(usize::from(args.inflight.max(1)));
        outs.push(tx);
        let inflight = Arc::new(Mutex::new(Inflight::default()));

        // Publisher.
        {
            let (inflight, stats, topics, client) =
                (inflight.clone(), stats.clone(), topics.clone(), client.clone());
            let drain = args.drain_timeout;
            let per_device = ms.len();
            publishers.push(tokio::spawn(async move {
                let mut dead = false;
                while let Some(mut job) = rx.recv().await {
                    let start = job.due.unwrap_or_else(Instant::now);
                    if qos == QoS::AtMostOnce {
                        // Nothing is acknowledged, so nothing can be spot-checked.
                        job.meta.sample = None;
                    }
                    stats.on_sent(&job.meta, job.body.len());
                    if dead {
                        // Keep taking this connection's share so the other connections go on.
                        stats.error("mqtt_connection_closed");
                        continue;
                    }
                    inflight.lock().expect("inflight lock").queued.push_back((start, job.meta));
                    let topic = topics[job.device as usize * per_device + job.measurement].clone();
                    if client.publish_bytes(topic, qos, false, job.body).await.is_err() {
                        inflight.lock().expect("inflight lock").queued.pop_back();
                        stats.error("mqtt_connection_closed");
                        dead = true;
                    }
                }
                // Wait (bounded) for the outstanding acknowledgements, then disconnect cleanly.
                let deadline = Instant::now() + drain;
                while !inflight.lock().expect("inflight lock").is_empty() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let _ = client.disconnect().await;
            }));
        }

        // Event loop.
        {
            let stats = stats.clone();
            let stripe = c as usize;
            loops.push(tokio::spawn(async move {
                let mut errors = 0;
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => errors = 0,
                        Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                            let mut f = inflight.lock().expect("inflight lock");
                            if let Some((start, meta)) = f.queued.pop_front() {
                                if qos == QoS::AtMostOnce {
                                    stats.on_acked(&meta, start.elapsed(), stripe);
                                } else {
                                    f.sent.insert(pkid, (start, meta));
                                    f.sent_order.push_back(pkid);
                                }
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(ack))) => {
                            let mut f = inflight.lock().expect("inflight lock");
                            if let Some((start, meta)) = f.sent.remove(&ack.pkid) {
                                f.sent_order.retain(|p| *p != ack.pkid);
                                drop(f);
                                stats.on_acked(&meta, start.elapsed(), stripe);
                            } else {
                                stats.error("mqtt_unexpected_puback");
                            }
                        }
                        Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                        Ok(_) => {}
                        Err(e) => {
                            stats.error(connection_error_kind(&e));
                            inflight.lock().expect("inflight lock").requeue_sent();
                            errors += 1;
                            if errors >= MAX_CONSECUTIVE_ERRORS {
                                give_up(&inflight, &stats);
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }));
        }
    }

    let t0 = Instant::now();
    let n = outs.len();
    run.dispatch(t0, outs, move |u| u.device as usize % n).await;
    for p in publishers {
        p.await.context("MQTT publisher panicked")?;
    }
    let elapsed = t0.elapsed();
    for l in loops {
        // Connections that did not see their DISCONNECT go out within a second are abandoned.
        let abort = l.abort_handle();
        if tokio::time::timeout(Duration::from_secs(1), l).await.is_err() {
            abort.abort();
        }
    }
    let info = RunInfo {
        transport: "mqtt".into(),
        target: format!("{}mqtt://{}:{}", if args.tls { "tls+" } else { "" }, args.host, args.port),
        schema: w.schema,
        devices: w.devices,
        unit_lines: args.lines_per_message,
        concurrency: conns,
        rate: w.rate,
        qos: Some(args.qos),
        pregenerated: w.pregenerate,
        gzip: false,
        measurements: ms.iter().map(|s| s.to_string()).collect(),
        ack: if args.qos == 0 { "QoS 0: written to the socket".into() } else { "PUBACK".into() },
    };
    let verify = w.verify.then(|| VerifyTarget {
        url: args.http_url.trim_end_matches('/').to_owned(),
        db,
        token: args.token.clone(),
        kind: w.schema,
        expect_acked: args.qos == 1,
    });
    Ok(run.finish(elapsed, info, verify).await)
}

/// The connection is gone for good: what it still held was never acknowledged.
fn give_up(inflight: &Mutex<Inflight>, stats: &Stats) {
    let mut f = inflight.lock().expect("inflight lock");
    let lost = f.queued.len() + f.sent.len();
    *f = Inflight::default();
    if lost > 0 {
        stats.error("mqtt_unacknowledged_at_give_up");
    }
}

fn connection_error_kind(e: &ConnectionError) -> &'static str {
    match e {
        ConnectionError::Io(_) => "mqtt_io",
        ConnectionError::ConnectionRefused(_) => "mqtt_connack_refused",
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => "mqtt_timeout",
        ConnectionError::MqttState(_) => "mqtt_protocol",
        _ => "mqtt_other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(lines: u32) -> UnitMeta {
        UnitMeta { lines, per_measurement: [lines, 0], values: 0, min_ts: 0, max_ts: 0, sample: None }
    }

    #[test]
    fn a_reconnect_puts_unacknowledged_messages_back_in_order() {
        let t = Instant::now();
        let mut f = Inflight::default();
        for lines in 1..=4 {
            f.queued.push_back((t, meta(lines)));
        }
        // Messages 1-3 went out as packets 7, 8, 9; packet 8 was acknowledged.
        for pkid in [7u16, 8, 9] {
            let e = f.queued.pop_front().expect("queued");
            f.sent.insert(pkid, e);
            f.sent_order.push_back(pkid);
        }
        f.sent.remove(&8);
        f.sent_order.retain(|p| *p != 8);
        f.requeue_sent();
        let order: Vec<u32> = f.queued.iter().map(|(_, m)| m.lines).collect();
        assert_eq!(order, [1, 3, 4], "rumqttc re-sends 7 and 9 before the never-sent message");
        assert!(f.sent.is_empty() && f.sent_order.is_empty());
        assert!(!f.is_empty());
    }
}
