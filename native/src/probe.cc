/*
 * Theory of operation: learn a client's exact TCP state by making its kernel answer us.
 *
 * Goal: after the serving replica vanished, find the client's rcv_nxt (the next byte it wants:
 * where to resume) and snd_nxt (where its own stream stands), its receive window and timestamp,
 * without any help from the client application.
 *
 * Data flow, on a libuv worker thread (the event loop never waits; the JS side gets a Promise):
 *   1. placeholder: a TCP socket for the same 4-tuple, put in repair mode, bound and connected.
 *      It sends nothing, but its presence keeps our kernel from answering the client's reply
 *      with RST. It is closed in repair mode at the end, which again sends nothing.
 *   2. capture: an AF_PACKET socket (IPv4, cooked) with a classic BPF filter that accepts only
 *      TCP from client addr:port to our addr:port; every packet is also checked in code.
 *   3. probe: through an IPPROTO_RAW socket, one ACK segment with an old sequence number
 *      carrying one byte. The client already has that byte, so its kernel answers at once with
 *      a duplicate ACK. Carrying data matters: Linux answers a bare out-of-window ACK at most
 *      once per 500 ms per socket, a data segment always.
 *   4. the answer: first ACK segment of the 4-tuple seen after the send. Its ack field is the
 *      client's rcv_nxt, its seq (plus any payload) the client's snd_nxt. A RST means the
 *      client's socket is gone (ECONNRESET).
 * Each attempt waits timeoutMs; the probe is resent up to `retries` more times, then the
 * promise rejects with ETIMEDOUT.
 *
 * Limits: IPv4. The old sequence number must really be old for the client: the caller passes
 * one (by default the SYN's slot, ISN, which stays old until the stream wraps 4 GiB).
 */
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "common.h"

namespace wedge {
namespace {

using Clock = std::chrono::steady_clock;

struct ProbeRequest {
  sockaddr_in local{}, remote{};
  uint32_t seq = 0, ack = 0, timeoutMs = 0, retries = 0;
  std::string ifname;
};

struct ProbeAnswer {
  uint32_t ack = 0, seq = 0, window = 0, tsVal = 0, tsEcr = 0, attempts = 0;
  bool timestamps = false;
  double rttMs = 0;
};

SysError HoldPlaceholder(const ProbeRequest& req, Fd* out) {
  Fd sock(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return Fail("socket", errno, "placeholder");
  int on = 1;
  if (setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0)
    return Fail("setsockopt", errno, "placeholder SO_REUSEADDR");
  if (setsockopt(sock.get(), IPPROTO_TCP, TCP_REPAIR, &on, sizeof on) < 0)
    return Fail("setsockopt", errno, "placeholder TCP_REPAIR=1");
  if (bind(sock.get(), reinterpret_cast<const sockaddr*>(&req.local), sizeof req.local) < 0)
    return Fail("bind", errno, "placeholder");
  if (connect(sock.get(), reinterpret_cast<const sockaddr*>(&req.remote), sizeof req.remote) < 0)
    return Fail("connect", errno, "placeholder");
  *out = std::move(sock);
  return {};
}

/* Classic BPF over the IPv4 header: TCP, not a fragment, client -> us on the probed ports. */
std::vector<sock_filter> AnswerFilter(const ProbeRequest& req) {
  const uint32_t client = ntohl(req.remote.sin_addr.s_addr), us = ntohl(req.local.sin_addr.s_addr);
  const uint16_t clientPort = ntohs(req.remote.sin_port), ourPort = ntohs(req.local.sin_port);
  return {
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9),              // protocol
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, 10),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 12),             // source address
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, client, 0, 8),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 16),             // destination address
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, us, 0, 6),
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6),              // fragment offset
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 4, 0),
      BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),             // X = IP header length
      BPF_STMT(BPF_LD | BPF_W | BPF_IND, 0),              // source port << 16 | destination port
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t(clientPort) << 16) | ourPort, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0xFFFF),
      BPF_STMT(BPF_RET | BPF_K, 0),
  };
}

SysError OpenCapture(const ProbeRequest& req, Fd* out) {
  return OpenIpv4Capture(AnswerFilter(req), req.ifname, out);
}

/* IPv4 + TCP (ACK, no options) + one zero payload byte (the client discards it as a duplicate);
 * the kernel fills the IP id and checksum. */
std::vector<uint8_t> BuildProbeSegment(const ProbeRequest& req) {
  constexpr size_t kIpLen = 20, kTcpLen = 20, kTotal = kIpLen + kTcpLen + 1;
  std::vector<uint8_t> pkt(kTotal, 0);
  iphdr* ip = reinterpret_cast<iphdr*>(pkt.data());
  ip->version = 4;
  ip->ihl = kIpLen / 4;
  ip->tot_len = htons(kTotal);
  ip->ttl = 64;
  ip->protocol = IPPROTO_TCP;
  ip->saddr = req.local.sin_addr.s_addr;
  ip->daddr = req.remote.sin_addr.s_addr;
  tcphdr* tcp = reinterpret_cast<tcphdr*>(pkt.data() + kIpLen);
  tcp->source = req.local.sin_port;
  tcp->dest = req.remote.sin_port;
  tcp->seq = htonl(req.seq);
  tcp->ack_seq = htonl(req.ack);
  tcp->doff = kTcpLen / 4;
  tcp->ack = 1;
  tcp->window = htons(0xFFFF);
  uint8_t pseudo[12];
  memcpy(pseudo, &ip->saddr, 4);
  memcpy(pseudo + 4, &ip->daddr, 4);
  pseudo[8] = 0;
  pseudo[9] = IPPROTO_TCP;
  pseudo[10] = 0;
  pseudo[11] = kTcpLen + 1;
  uint32_t sum = SumWords(pseudo, sizeof pseudo, 0);
  tcp->check = htons(FoldChecksum(SumWords(pkt.data() + kIpLen, kTcpLen + 1, sum)));
  return pkt;
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

enum class Verdict { kIgnore, kAnswer, kReset };

/* Checks in code what the BPF filter promised, then reads the answer out of the segment. */
Verdict ParseAnswer(const uint8_t* pkt, size_t len, const ProbeRequest& req, ProbeAnswer* a) {
  if (len < sizeof(iphdr)) return Verdict::kIgnore;
  const iphdr* ip = reinterpret_cast<const iphdr*>(pkt);
  size_t ipLen = ip->ihl * 4u, total = ntohs(ip->tot_len);
  if (ip->version != 4 || ip->protocol != IPPROTO_TCP || total > len || ipLen + sizeof(tcphdr) > total ||
      ip->saddr != req.remote.sin_addr.s_addr || ip->daddr != req.local.sin_addr.s_addr)
    return Verdict::kIgnore;
  const tcphdr* tcp = reinterpret_cast<const tcphdr*>(pkt + ipLen);
  size_t tcpLen = tcp->doff * 4u;
  if (tcp->source != req.remote.sin_port || tcp->dest != req.local.sin_port ||
      tcpLen < sizeof(tcphdr) || ipLen + tcpLen > total)
    return Verdict::kIgnore;
  if (tcp->rst) return Verdict::kReset;
  if (!tcp->ack) return Verdict::kIgnore;
  a->ack = ntohl(tcp->ack_seq);
  a->seq = ntohl(tcp->seq) + static_cast<uint32_t>(total - ipLen - tcpLen);
  a->window = ntohs(tcp->window);
  ReadTimestampOption(pkt + ipLen + sizeof(tcphdr), tcpLen - sizeof(tcphdr), a);
  return Verdict::kAnswer;
}

/* Waits until `deadline` for the answer. Return: empty on success, ETIMEDOUT, or the failure. */
SysError AwaitAnswer(int capture, const ProbeRequest& req, Clock::time_point deadline, ProbeAnswer* a) {
  uint8_t buf[2048];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return Fail("poll", ETIMEDOUT, "no answer from the client");
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
    if (from.sll_pkttype == PACKET_OUTGOING) continue;
    switch (ParseAnswer(buf, static_cast<size_t>(n), req, a)) {
      case Verdict::kAnswer: return {};
      case Verdict::kReset: return Fail("probe", ECONNRESET, "the client answered with RST");
      case Verdict::kIgnore: break;
    }
  }
}

SysError RunProbe(const ProbeRequest& req, ProbeAnswer* answer) {
  Fd placeholder, capture;
  if (SysError e = HoldPlaceholder(req, &placeholder)) return e;
  if (SysError e = OpenCapture(req, &capture)) return e;
  Fd raw(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
  if (!raw.valid()) return Fail("socket", errno, "raw IPv4");
  std::vector<uint8_t> segment = BuildProbeSegment(req);
  const auto timeout = std::chrono::milliseconds(req.timeoutMs);
  for (uint32_t attempt = 1; attempt <= req.retries + 1; attempt++) {
    Clock::time_point sent = Clock::now();
    if (sendto(raw.get(), segment.data(), segment.size(), 0,
               reinterpret_cast<const sockaddr*>(&req.remote), sizeof req.remote) < 0)
      return Fail("sendto", errno, "probe segment");
    SysError e = AwaitAnswer(capture.get(), req, sent + timeout, answer);
    if (!e) {
      answer->attempts = attempt;
      answer->rttMs = std::chrono::duration<double, std::milli>(Clock::now() - sent).count();
      return {};
    }
    if (e.err != ETIMEDOUT) return e;
  }
  return Fail("poll", ETIMEDOUT, "no answer from the client after " + std::to_string(req.retries + 1) + " probes");
}

class ProbeWorker : public Napi::AsyncWorker {
 public:
  ProbeWorker(Napi::Env env, ProbeRequest req)
      : Napi::AsyncWorker(env, "wedge:probe"), deferred_(Napi::Promise::Deferred::New(env)), req_(std::move(req)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override { error_ = RunProbe(req_, &answer_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (error_) {
      deferred_.Reject(MakeNativeError(env, error_).Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("ack", answer_.ack);
    o.Set("seq", answer_.seq);
    o.Set("window", answer_.window);
    if (answer_.timestamps) {
      o.Set("tsVal", answer_.tsVal);
      o.Set("tsEcr", answer_.tsEcr);
    }
    o.Set("rttMs", answer_.rttMs);
    o.Set("attempts", answer_.attempts);
    deferred_.Resolve(o);
  }

 private:
  Napi::Promise::Deferred deferred_;
  ProbeRequest req_;
  ProbeAnswer answer_;
  SysError error_;
};

bool ReadProbeRequest(const Napi::Object& o, ProbeRequest* req) {
  std::string localAddress, remoteAddress;
  uint32_t localPort, remotePort;
  if (!GetString(o, "localAddress", &localAddress) || !GetUint32(o, "localPort", &localPort) ||
      !GetString(o, "remoteAddress", &remoteAddress) || !GetUint32(o, "remotePort", &remotePort) ||
      !GetUint32(o, "seq", &req->seq) || !GetUint32(o, "ack", &req->ack) ||
      !GetString(o, "ifname", &req->ifname) ||
      !GetUint32(o, "timeoutMs", &req->timeoutMs) || !GetUint32(o, "retries", &req->retries))
    return false;
  if (!ToSockaddr(localAddress, localPort, &req->local) || !ToSockaddr(remoteAddress, remotePort, &req->remote)) {
    Napi::TypeError::New(o.Env(), "probe: addresses must be IPv4 and ports 0..65535").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

Napi::Value Probe(const Napi::CallbackInfo& info) {
  ProbeRequest req;
  if (!info[0].IsObject() || !ReadProbeRequest(info[0].As<Napi::Object>(), &req)) return info.Env().Undefined();
  auto* worker = new ProbeWorker(info.Env(), std::move(req));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void InitProbe(Napi::Env env, Napi::Object exports) {
  exports.Set("probe", Napi::Function::New(env, Probe));
}

}  // namespace wedge
