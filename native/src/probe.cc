/*
 * Theory of operation: learn clients' exact TCP state by making their kernels answer us.
 *
 * Goal: after the serving replica vanished, find for each of its connections the client's
 * rcv_nxt (the next byte it wants: where to resume) and snd_nxt (where its own stream stands),
 * its receive window and timestamp, without any help from the client application. One call
 * probes a batch: every connection of an adopted address at once, while the link is still idle
 * (connections already resumed would fill it, and each later answer would wait behind data).
 * Probing one connection is a batch of one.
 *
 * Data flow, on one libuv worker thread (the event loop never waits; the JS side gets a Promise):
 *   1. capture: one AF_PACKET socket (IPv4, cooked) with a classic BPF filter that accepts only
 *      TCP from the batch's clients to the batch's addresses and ports, and a receive buffer of
 *      a few MiB so that a thousand answers arriving at once are not dropped. The filter lists
 *      the values of each 4-tuple field while they are few; every packet is matched in code on
 *      its full 4-tuple.
 *   2. placeholders: per connection, a TCP socket for the same 4-tuple, put in repair mode,
 *      bound and connected. It sends nothing, but its presence keeps our kernel from answering
 *      the client's reply with RST. A connection whose placeholder cannot be made fails alone.
 *      A live target (re-probing a connection served here) needs none: its socket is there.
 *   3. probes: through one IPPROTO_RAW socket, per connection, right after its placeholder, one
 *      ACK segment with an old sequence number carrying one byte. The client already has that
 *      byte, so its kernel answers at once with a duplicate ACK. Carrying data matters: Linux
 *      answers a bare out-of-window ACK at most once per 500 ms per socket, a data segment
 *      always. All probes go out first, then the answers are collected.
 *   4. answers: the first ACK segment of a connection's 4-tuple. Its ack field is the client's
 *      rcv_nxt, its seq (plus any payload) the client's snd_nxt. A RST means the client's
 *      socket is gone (ECONNRESET).
 *   5. restore (probeAndRestore: targets with `restore`): as soon as a connection is answered,
 *      its placeholder is closed and the connection rebuilt with TCP_REPAIR at the client's
 *      position (repair.cc SpecFor, clock read then), and the new socket dumped; the JS side
 *      gets the answer with the fd and dump, or with the restore's NativeError.
 * Each attempt waits up to timeoutMs for all answers; the connections still unanswered get
 * their probe again, up to `retries` more times, then fail with ETIMEDOUT. The placeholders are
 * closed in repair mode (which again sends nothing) before the promise resolves with one result
 * per connection, in input order: its answer or its NativeError.
 *
 * TCP Migrate: a connection may first need to be moved to us. Its slot then starts with a
 * Migrate SYN (flags SYN, the caller's options, no payload) instead of a probe. The client's
 * agent answers the first valid one with a SYN-ACK, after installing its address rewrite; the
 * slot then sends its probe at once, through that rewrite, and waits for the duplicate ACK as
 * above. A RST to the SYN means the agent refused it (another candidate won, or the SYN is not
 * valid for the connection): ECONNREFUSED. The placeholder is held throughout, so the agent's
 * SYN-ACK and the client's segments never meet a socket-less port here.
 *
 * Limits: IPv4. The old sequence number must really be old for the client: the caller passes
 * one (by default the SYN's slot, ISN, which stays old until the stream wraps 4 GiB).
 */
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <unordered_map>
#include <thread>
#include <vector>

#include "repair.h"

namespace wedge {
namespace {

using Clock = std::chrono::steady_clock;

/* Room for a batch's answers arriving at once: each holds about 1 KiB of the capture's buffer. */
constexpr int kCaptureBufferBytes = 4 << 20;

/* A 4-tuple field with more distinct values than this in a batch is matched in code only. */
constexpr size_t kMaxFilterValues = 32;

struct ProbeTarget {
  sockaddr_in local{}, remote{};
  uint32_t seq = 0, ack = 0;
  /* TCP Migrate: the SYN sent first (empty options: none, probe at once). */
  uint32_t synSeq = 0, synAck = 0;
  std::vector<uint8_t> synOptions;
  /* Rebuild the connection here as soon as the client answers (see RestoreAnswered). */
  bool restore = false;
  /* The 4-tuple is a live socket of ours (a re-probe): it keeps our kernel from answering RST,
   * so no placeholder is held. */
  bool live = false;
  RestoreBase restoreBase;
};

struct ProbeOptions {
  std::string ifname;
  uint32_t timeoutMs = 0, retries = 0;
};

struct ProbeAnswer {
  uint32_t ack = 0, seq = 0, window = 0, tsVal = 0, tsEcr = 0, attempts = 0;
  bool timestamps = false;
  double rttMs = 0, moveMs = 0;
};

/* One connection of a batch: its placeholder and last probe while it waits, then its outcome. */
struct ProbeSlot {
  ProbeTarget target;
  Fd placeholder;
  Clock::time_point sentAt;
  ProbeAnswer answer;
  bool answered = false;
  /* Migrate SYN answered with SYN-ACK (or none needed): the probe may go out. */
  bool moved = false;
  double moveMs = 0;
  SysError error;
  /* A restoring target once answered: its new socket and that socket's dump, or why none. */
  Fd restored;
  SocketDump restoredDump;
  SysError restoreError;
  double restoreMs = 0;

  bool waiting() const { return !answered && !error; }
};

/* A connection as its segments name it, from our side, in network byte order. */
struct FourTuple {
  uint32_t localAddress = 0, remoteAddress = 0;
  uint16_t localPort = 0, remotePort = 0;

  bool operator==(const FourTuple& o) const {
    return localAddress == o.localAddress && remoteAddress == o.remoteAddress && localPort == o.localPort &&
           remotePort == o.remotePort;
  }
};

struct FourTupleHash {
  size_t operator()(const FourTuple& t) const {
    uint64_t ends = (uint64_t(t.remoteAddress) << 32) | (uint64_t(t.remotePort) << 16) | t.localPort;
    return std::hash<uint64_t>{}(ends ^ (uint64_t(t.localAddress) << 16));
  }
};

/* Slot numbers by 4-tuple: how a captured segment finds its connection. */
using SlotIndex = std::unordered_map<FourTuple, size_t, FourTupleHash>;

FourTuple TupleOf(const ProbeTarget& t) {
  return {t.local.sin_addr.s_addr, t.remote.sin_addr.s_addr, t.local.sin_port, t.remote.sin_port};
}

SysError HoldPlaceholder(const ProbeTarget& target, Fd* out) {
  Fd sock(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return Fail("socket", errno, "placeholder");
  int on = 1;
  if (setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0)
    return Fail("setsockopt", errno, "placeholder SO_REUSEADDR");
  if (setsockopt(sock.get(), IPPROTO_TCP, TCP_REPAIR, &on, sizeof on) < 0)
    return Fail("setsockopt", errno, "placeholder TCP_REPAIR=1");
  if (bind(sock.get(), reinterpret_cast<const sockaddr*>(&target.local), sizeof target.local) < 0)
    return Fail("bind", errno, "placeholder");
  if (connect(sock.get(), reinterpret_cast<const sockaddr*>(&target.remote), sizeof target.remote) < 0)
    return Fail("connect", errno, "placeholder");
  *out = std::move(sock);
  return {};
}

/* Appends a test of the field `load` reads: a packet whose field is none of `values` is dropped. */
void AppendOneOf(std::vector<sock_filter>* code, sock_filter load, const std::set<uint32_t>& values) {
  if (values.size() > kMaxFilterValues) return;  // too many to list: left to the match in code
  code->push_back(load);
  auto toAccept = static_cast<uint8_t>(values.size());  // jump over the later tests and the drop
  for (uint32_t value : values) code->push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, value, toAccept--, 0));
  code->push_back(BPF_STMT(BPF_RET | BPF_K, 0));
}

/* Classic BPF over the IPv4 header: TCP, not a fragment, from the batch's clients to the
 * batch's addresses and ports. */
std::vector<sock_filter> AnswerFilter(const std::vector<ProbeSlot>& slots) {
  std::set<uint32_t> ours, clients, ourPorts, clientPorts;
  for (const ProbeSlot& slot : slots) {
    ours.insert(ntohl(slot.target.local.sin_addr.s_addr));
    clients.insert(ntohl(slot.target.remote.sin_addr.s_addr));
    ourPorts.insert(ntohs(slot.target.local.sin_port));
    clientPorts.insert(ntohs(slot.target.remote.sin_port));
  }
  std::vector<sock_filter> code;
  AppendOneOf(&code, BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9), {IPPROTO_TCP});  // protocol
  code.push_back(BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6));                     // fragment offset
  code.push_back(BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 0, 1));
  code.push_back(BPF_STMT(BPF_RET | BPF_K, 0));
  AppendOneOf(&code, BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 16), ours);          // destination address
  AppendOneOf(&code, BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 12), clients);       // source address
  code.push_back(BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0));                    // X = IP header length
  AppendOneOf(&code, BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2), ourPorts);       // destination port
  AppendOneOf(&code, BPF_STMT(BPF_LD | BPF_H | BPF_IND, 0), clientPorts);    // source port
  code.push_back(BPF_STMT(BPF_RET | BPF_K, 0xFFFF));
  return code;
}

SysError OpenSockets(const std::vector<ProbeSlot>& slots, const std::string& ifname, Fd* capture, Fd* raw) {
  if (SysError e = OpenIpv4Capture(AnswerFilter(slots), ifname, capture)) return e;
  // SO_RCVBUFFORCE passes net.core.rmem_max with CAP_NET_ADMIN; without it, take what is allowed.
  if (setsockopt(capture->get(), SOL_SOCKET, SO_RCVBUFFORCE, &kCaptureBufferBytes, sizeof kCaptureBufferBytes) < 0 &&
      setsockopt(capture->get(), SOL_SOCKET, SO_RCVBUF, &kCaptureBufferBytes, sizeof kCaptureBufferBytes) < 0)
    return Fail("setsockopt", errno, "AF_PACKET capture SO_RCVBUF");
  *raw = Fd(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
  if (!raw->valid()) return Fail("socket", errno, "raw IPv4");
  return {};
}

/* IPv4 + TCP with `flags`, `options` (a multiple of 4 bytes) and `payloadBytes` zero bytes;
 * the kernel fills the IP id and checksum. */
std::vector<uint8_t> BuildSegment(const ProbeTarget& target, uint32_t seq, uint32_t ack, uint8_t flags,
                                  const std::vector<uint8_t>& options, size_t payloadBytes) {
  constexpr size_t kIpLen = 20;
  const size_t tcpLen = 20 + options.size(), total = kIpLen + tcpLen + payloadBytes;
  std::vector<uint8_t> pkt(total, 0);
  iphdr* ip = reinterpret_cast<iphdr*>(pkt.data());
  ip->version = 4;
  ip->ihl = kIpLen / 4;
  ip->tot_len = htons(total);
  ip->ttl = 64;
  ip->protocol = IPPROTO_TCP;
  ip->saddr = target.local.sin_addr.s_addr;
  ip->daddr = target.remote.sin_addr.s_addr;
  tcphdr* tcp = reinterpret_cast<tcphdr*>(pkt.data() + kIpLen);
  tcp->source = target.local.sin_port;
  tcp->dest = target.remote.sin_port;
  tcp->seq = htonl(seq);
  tcp->ack_seq = htonl(ack);
  tcp->doff = tcpLen / 4;
  pkt[kIpLen + 13] = flags;
  tcp->window = htons(0xFFFF);
  std::copy(options.begin(), options.end(), pkt.begin() + kIpLen + 20);
  uint8_t pseudo[12];
  memcpy(pseudo, &ip->saddr, 4);
  memcpy(pseudo + 4, &ip->daddr, 4);
  pseudo[8] = 0;
  pseudo[9] = IPPROTO_TCP;
  pseudo[10] = static_cast<uint8_t>((tcpLen + payloadBytes) >> 8);
  pseudo[11] = static_cast<uint8_t>(tcpLen + payloadBytes);
  uint32_t sum = SumWords(pseudo, sizeof pseudo, 0);
  tcp->check = htons(FoldChecksum(SumWords(pkt.data() + kIpLen, tcpLen + payloadBytes, sum)));
  return pkt;
}

constexpr uint8_t kFlagSyn = 0x02, kFlagAck = 0x10;

/* The probe: an ACK with an old sequence number and one zero byte (the client discards it as a
 * duplicate and answers with its state). */
std::vector<uint8_t> BuildProbeSegment(const ProbeTarget& target) {
  return BuildSegment(target, target.seq, target.ack, kFlagAck, {}, 1);
}

std::vector<uint8_t> BuildMigrateSyn(const ProbeTarget& target) {
  return BuildSegment(target, target.synSeq, target.synAck, kFlagSyn, target.synOptions, 0);
}

void ReadTimestampOption(const uint8_t* opt, size_t len, ProbeAnswer* a) {
  for (size_t i = 0; i < len;) {
    uint8_t kind = opt[i];
    if (kind == TCPOPT_EOL) return;
    if (kind == TCPOPT_NOP) { i++; continue; }
    if (i + 1 >= len || opt[i + 1] < 2 || i + opt[i + 1] > len) return;
    if (kind == TCPOPT_TIMESTAMP && opt[i + 1] == TCPOLEN_TIMESTAMP) {
      uint32_t v[2];
      memcpy(v, opt + i + 2, sizeof v);
      a->timestamps = true;
      a->tsVal = ntohl(v[0]);
      a->tsEcr = ntohl(v[1]);
    }
    i += opt[i + 1];
  }
}

/* A client's segment as the capture delivered it. */
struct ClientSegment {
  FourTuple tuple;
  bool rst = false, ack = false, syn = false;
  ProbeAnswer answer;
};

/* Checks in code what the BPF filter promised, then reads the segment. False: not a TCP segment. */
bool ParseClientSegment(const uint8_t* pkt, size_t len, ClientSegment* out) {
  if (len < sizeof(iphdr)) return false;
  const iphdr* ip = reinterpret_cast<const iphdr*>(pkt);
  size_t ipLen = ip->ihl * 4u, total = ntohs(ip->tot_len);
  if (ip->version != 4 || ip->protocol != IPPROTO_TCP || (ntohs(ip->frag_off) & 0x1fff) != 0 || total > len ||
      ipLen < sizeof(iphdr) || ipLen + sizeof(tcphdr) > total)
    return false;
  const tcphdr* tcp = reinterpret_cast<const tcphdr*>(pkt + ipLen);
  size_t tcpLen = tcp->doff * 4u;
  if (tcpLen < sizeof(tcphdr) || ipLen + tcpLen > total) return false;
  out->tuple = {ip->daddr, ip->saddr, tcp->dest, tcp->source};
  out->rst = tcp->rst;
  out->ack = tcp->ack;
  out->syn = tcp->syn;
  out->answer.ack = ntohl(tcp->ack_seq);
  out->answer.seq = ntohl(tcp->seq) + static_cast<uint32_t>(total - ipLen - tcpLen);
  out->answer.window = ntohs(tcp->window);
  ReadTimestampOption(pkt + ipLen + sizeof(tcphdr), tcpLen - sizeof(tcphdr), &out->answer);
  return true;
}

/* Sends a slot's next segment: its Migrate SYN until the agent accepted it, then its probe. */
void SendNext(int raw, ProbeSlot* slot) {
  std::vector<uint8_t> segment = slot->moved ? BuildProbeSegment(slot->target) : BuildMigrateSyn(slot->target);
  slot->sentAt = Clock::now();
  slot->answer.attempts++;
  // ENOBUFS: our own queue dropped it under the burst, as the wire might; the next attempt resends it.
  if (sendto(raw, segment.data(), segment.size(), 0, reinterpret_cast<const sockaddr*>(&slot->target.remote),
             sizeof slot->target.remote) < 0 && errno != ENOBUFS)
    slot->error = Fail("sendto", errno, slot->moved ? "probe segment" : "Migrate SYN");
}

/* Sends one segment to each connection still waiting. */
void SendProbes(int raw, std::vector<ProbeSlot>* slots) {
  for (ProbeSlot& slot : *slots)
    if (slot.waiting()) SendNext(raw, &slot);
}

/*
 * An answered restoring slot: its placeholder goes (in repair mode: silently) and the connection
 * is rebuilt at once at the client's position, so no other socket can take the 4-tuple between.
 * EADDRNOTAVAIL: a child process forked meanwhile still holds a copy of the placeholder until
 * it execs; RunProbes tries such slots again a little later.
 */
void RestoreAnswered(ProbeSlot* slot) {
  const auto started = Clock::now();
  slot->placeholder.Reset();
  const ClientPosition at{slot->answer.ack, slot->answer.seq, slot->answer.window};
  const RestoreSpec spec = SpecFor(slot->target.restoreBase, slot->target.local, slot->target.remote, at, WallClockMs());
  slot->restoreError = RestoreSocket(spec, &slot->restored);
  if (!slot->restoreError) slot->restoreError = DumpSocket(slot->restored.get(), &slot->restoredDump);
  if (slot->restoreError && slot->restored.valid()) {
    int on = 1;  // live already: back to repair mode, so that closing it sends nothing
    setsockopt(slot->restored.get(), IPPROTO_TCP, TCP_REPAIR, &on, sizeof on);
    slot->restored.Reset();
  }
  slot->restoreMs += std::chrono::duration<double, std::milli>(Clock::now() - started).count();
}

bool RestoreBlocked(const ProbeSlot& slot) {
  return slot.target.restore && slot.answered && slot.restoreError.err == EADDRNOTAVAIL;
}

/* Reads clients' segments until no connection waits or until `deadline`.
 * Return: the capture's failure, if any. */
SysError CollectAnswers(int capture, int raw, const SlotIndex& index, Clock::time_point deadline, std::vector<ProbeSlot>* slots) {
  auto waiting = std::count_if(slots->begin(), slots->end(), [](const ProbeSlot& s) { return s.waiting(); });
  uint8_t buf[2048];
  while (waiting > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return {};
    pollfd pfd{capture, POLLIN, 0};
    int ready = poll(&pfd, 1, static_cast<int>(left));
    if (ready < 0 && errno != EINTR) return Fail("poll");
    if (ready <= 0) continue;
    sockaddr_ll from{};
    socklen_t fromLen = sizeof from;
    ssize_t n = recvfrom(capture, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fromLen);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Fail("recvfrom", errno, "AF_PACKET capture");
    }
    ClientSegment segment;
    if (from.sll_pkttype == PACKET_OUTGOING || !ParseClientSegment(buf, static_cast<size_t>(n), &segment)) continue;
    auto found = index.find(segment.tuple);
    if (found == index.end()) continue;
    ProbeSlot& slot = (*slots)[found->second];
    if (!slot.waiting() || !(segment.rst || segment.ack)) continue;
    if (!slot.moved) {
      if (segment.rst) {
        slot.error = Fail("migrate", ECONNREFUSED, "the client's agent refused the Migrate SYN");
        waiting--;
      } else if (segment.syn) {
        slot.moved = true;
        slot.moveMs = std::chrono::duration<double, std::milli>(Clock::now() - slot.sentAt).count();
        SendNext(raw, &slot);
        if (slot.error) waiting--;
      }
      continue;
    }
    if (segment.syn) continue;  // a repeated SYN-ACK is not the probe's answer
    if (segment.rst) {
      slot.error = Fail("probe", ECONNRESET, "the client answered with RST");
    } else {
      segment.answer.attempts = slot.answer.attempts;
      segment.answer.rttMs = std::chrono::duration<double, std::milli>(Clock::now() - slot.sentAt).count();
      segment.answer.moveMs = slot.moveMs;
      slot.answer = segment.answer;
      slot.answered = true;
      if (slot.target.restore) RestoreAnswered(&slot);
    }
    waiting--;
  }
  return {};
}

/* Probes every slot's connection; each slot ends answered or with its error, its placeholder closed. */
void RunProbes(const ProbeOptions& options, std::vector<ProbeSlot>* slots) {
  // The capture first: each connection's first segment goes out as soon as its placeholder
  // stands, so early answers arrive (and wait in the capture) while later placeholders are made.
  Fd capture, raw;
  SysError failure = OpenSockets(*slots, options.ifname, &capture, &raw);
  SlotIndex index;
  for (size_t i = 0; i < slots->size(); i++) {
    ProbeSlot& slot = (*slots)[i];
    slot.moved = slot.target.synOptions.empty();
    if (SysError e = slot.target.live ? SysError{} : HoldPlaceholder(slot.target, &slot.placeholder)) {
      slot.error = e;
      continue;
    }
    index.emplace(TupleOf(slot.target), i);
    if (!failure) SendNext(raw.get(), &slot);
  }
  if (index.empty()) return;
  const auto timeout = std::chrono::milliseconds(options.timeoutMs);
  auto anyWaiting = [&] { return std::any_of(slots->begin(), slots->end(), [](const ProbeSlot& s) { return s.waiting(); }); };
  for (uint32_t attempt = 0; !failure && attempt <= options.retries && anyWaiting(); attempt++) {
    if (attempt > 0) SendProbes(raw.get(), slots);
    failure = CollectAnswers(capture.get(), raw.get(), index, Clock::now() + timeout, slots);
  }
  CloseCaptureLater(std::move(capture));
  const SysError unanswered =
      failure ? failure : Fail("poll", ETIMEDOUT, "no answer from the client after " + std::to_string(options.retries + 1) + " probes");
  for (ProbeSlot& slot : *slots) {
    if (slot.waiting()) slot.error = unanswered;
    slot.placeholder.Reset();  // in repair mode: sends nothing
  }
  constexpr int kRestoreRetries = 10;
  constexpr auto kRestoreRetryDelay = std::chrono::milliseconds(5);
  for (int retry = 0; retry < kRestoreRetries && std::any_of(slots->begin(), slots->end(), RestoreBlocked); retry++) {
    std::this_thread::sleep_for(kRestoreRetryDelay);
    for (ProbeSlot& slot : *slots)
      if (RestoreBlocked(slot)) RestoreAnswered(&slot);
  }
}

Napi::Object AnswerObject(Napi::Env env, const ProbeAnswer& answer) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ack", answer.ack);
  o.Set("seq", answer.seq);
  o.Set("window", answer.window);
  if (answer.timestamps) {
    o.Set("tsVal", answer.tsVal);
    o.Set("tsEcr", answer.tsEcr);
  }
  o.Set("rttMs", answer.rttMs);
  if (answer.moveMs > 0) o.Set("moveMs", answer.moveMs);
  o.Set("attempts", answer.attempts);
  return o;
}

/* { answer, restored: { fd, state, restoreMs } | NativeError }; the fd is JS's from here on. */
Napi::Object RestoredObject(Napi::Env env, ProbeSlot* slot) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("answer", AnswerObject(env, slot->answer));
  if (slot->restoreError) {
    o.Set("restored", MakeNativeError(env, slot->restoreError).Value());
    return o;
  }
  Napi::Object restored = Napi::Object::New(env);
  restored.Set("state", DumpToJs(env, slot->restoredDump));
  restored.Set("restoreMs", slot->restoreMs);
  restored.Set("fd", slot->restored.Release());
  o.Set("restored", restored);
  return o;
}

class ProbeWorker : public Napi::AsyncWorker {
 public:
  ProbeWorker(Napi::Env env, ProbeOptions options, std::vector<ProbeSlot> slots)
      : Napi::AsyncWorker(env, "wedge:probe"),
        deferred_(Napi::Promise::Deferred::New(env)),
        options_(std::move(options)),
        slots_(std::move(slots)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override { RunProbes(options_, &slots_); }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array results = Napi::Array::New(env, slots_.size());
    for (uint32_t i = 0; i < slots_.size(); i++) {
      ProbeSlot& slot = slots_[i];
      if (slot.error) results.Set(i, MakeNativeError(env, slot.error).Value());
      else if (slot.target.restore) results.Set(i, RestoredObject(env, &slot));
      else results.Set(i, AnswerObject(env, slot.answer));
    }
    deferred_.Resolve(results);
  }

 private:
  Napi::Promise::Deferred deferred_;
  ProbeOptions options_;
  std::vector<ProbeSlot> slots_;
};

Napi::Value ThrowTypeError(Napi::Env env, const char* message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool ReadProbeTarget(const Napi::Object& o, ProbeTarget* target) {
  std::string localAddress, remoteAddress;
  uint32_t localPort, remotePort;
  if (!GetString(o, "localAddress", &localAddress) || !GetUint32(o, "localPort", &localPort) ||
      !GetString(o, "remoteAddress", &remoteAddress) || !GetUint32(o, "remotePort", &remotePort) ||
      !GetUint32(o, "seq", &target->seq) || !GetUint32(o, "ack", &target->ack))
    return false;
  if (!ToSockaddr(localAddress, localPort, &target->local) || !ToSockaddr(remoteAddress, remotePort, &target->remote)) {
    ThrowTypeError(o.Env(), "probeMany: addresses must be IPv4 and ports 0..65535");
    return false;
  }
  if (o.Has("live") && !GetBool(o, "live", &target->live)) return false;
  if (!o.Has("migrateSyn")) return true;
  Napi::Object syn;
  if (!GetObject(o, "migrateSyn", &syn) || !GetUint32(syn, "seq", &target->synSeq) || !GetUint32(syn, "ack", &target->synAck))
    return false;
  Napi::Value options = syn.Get("options");
  size_t length = options.IsBuffer() ? options.As<Napi::Buffer<uint8_t>>().Length() : 0;
  if (length == 0 || length % 4 != 0 || length > 40) {
    ThrowTypeError(o.Env(), "probeMany: migrateSyn.options must be a Buffer of 4..40 bytes, a multiple of 4");
    return false;
  }
  Napi::Buffer<uint8_t> bytes = options.As<Napi::Buffer<uint8_t>>();
  target->synOptions.assign(bytes.Data(), bytes.Data() + bytes.Length());
  return true;
}

Napi::Value ProbeMany(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) return ThrowTypeError(env, "probeMany expects { ifname, timeoutMs, retries, targets }");
  Napi::Object request = info[0].As<Napi::Object>();
  ProbeOptions options;
  if (!GetString(request, "ifname", &options.ifname) || !GetUint32(request, "timeoutMs", &options.timeoutMs) ||
      !GetUint32(request, "retries", &options.retries))
    return env.Undefined();
  Napi::Value list = request.Get("targets");
  if (!list.IsArray()) return ThrowTypeError(env, "probeMany: targets must be an array");
  Napi::Array targets = list.As<Napi::Array>();
  std::vector<ProbeSlot> slots(targets.Length());
  for (uint32_t i = 0; i < slots.size(); i++) {
    Napi::Value target = targets.Get(i);
    if (!target.IsObject()) return ThrowTypeError(env, "probeMany: each target must be an object");
    ProbeTarget& slotTarget = slots[i].target;
    if (!ReadProbeTarget(target.As<Napi::Object>(), &slotTarget)) return env.Undefined();
    if (target.As<Napi::Object>().Has("restore")) {
      Napi::Object base;
      if (!GetObject(target.As<Napi::Object>(), "restore", &base) || !ReadRestoreBase(base, &slotTarget.restoreBase)) return env.Undefined();
      slotTarget.restore = true;
    }
  }
  auto* worker = new ProbeWorker(env, std::move(options), std::move(slots));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void InitProbe(Napi::Env env, Napi::Object exports) {
  exports.Set("probeMany", Napi::Function::New(env, ProbeMany));
}

}  // namespace wedge
