/*
 * Theory of operation: the raw packet plumbing of TCP Migrate.
 *
 * Goal: let a candidate server send a Migrate SYN (and the client agent its SYN-ACK or RST
 * answers) with exactly the TCP options TypeScript built (wedge/migrate/option.ts), and let the
 * agent see every Migrate SYN addressed to its host without blocking the event loop. Policy
 * (what the option says, whether it is valid, what to answer) stays in TypeScript.
 *
 * Sending (sendTcpSegment): one IPv4 + TCP segment built by hand in an IPPROTO_RAW socket
 * (IP_HDRINCL): TCP checksum over the pseudo-header, header and options computed here; the
 * kernel fills the IP id and header checksum. Options are passed as bytes, must be a multiple of
 * 4 and at most 40. Synchronous: a raw sendto does not wait on the network.
 *
 * Capturing (captureMigrateSyns): an AF_PACKET socket (cooked IPv4) with a classic BPF filter
 * that keeps only unfragmented TCP segments to the agent's address with SYN set and ACK clear,
 * a data offset leaving room for the 32-byte Migrate option, and as FIRST option kind 253 with
 * the given ExID (option.ts always puts it first). Outgoing frames are skipped. A dedicated
 * thread polls the socket and an eventfd (the stop signal) and hands each segment to JS through
 * a ThreadSafeFunction with a bounded queue: when JS falls behind, segments are dropped and
 * counted rather than buffered without limit (a SYN flood must not grow our memory). Everything
 * the filter promised is checked again in code; TypeScript then parses and verifies the option.
 * stop() signals the thread, joins it and releases the function; the capture lives as long as
 * its stop function (a finalizer stops and frees it if JS drops it).
 *
 * Limits: IPv4, Linux.
 */
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "common.h"

namespace wedge {
namespace {

constexpr size_t kIpHeader = 20, kTcpHeader = 20, kMaxOptions = 40;
constexpr uint8_t kMigrateKind = 253;
constexpr size_t kQueueLimit = 1024;

struct SegmentSpec {
  sockaddr_in local{}, remote{};
  uint32_t seq = 0, ack = 0, flags = 0, window = 0;
  uint32_t mark = 0;  // SO_MARK of the raw socket, 0: none (netfilter rules may tell segments apart by it)
  std::vector<uint8_t> options;
};

std::vector<uint8_t> BuildSegment(const SegmentSpec& spec) {
  const size_t tcpLen = kTcpHeader + spec.options.size(), total = kIpHeader + tcpLen;
  std::vector<uint8_t> pkt(total, 0);
  iphdr* ip = reinterpret_cast<iphdr*>(pkt.data());
  ip->version = 4;
  ip->ihl = kIpHeader / 4;
  ip->tot_len = htons(static_cast<uint16_t>(total));
  ip->ttl = 64;
  ip->protocol = IPPROTO_TCP;
  ip->saddr = spec.local.sin_addr.s_addr;
  ip->daddr = spec.remote.sin_addr.s_addr;
  uint8_t* tcpBytes = pkt.data() + kIpHeader;
  tcphdr* tcp = reinterpret_cast<tcphdr*>(tcpBytes);
  tcp->source = spec.local.sin_port;
  tcp->dest = spec.remote.sin_port;
  tcp->seq = htonl(spec.seq);
  tcp->ack_seq = htonl(spec.ack);
  tcp->doff = static_cast<uint16_t>(tcpLen / 4);
  tcpBytes[13] = static_cast<uint8_t>(spec.flags);
  tcp->window = htons(static_cast<uint16_t>(spec.window));
  if (!spec.options.empty()) memcpy(tcpBytes + kTcpHeader, spec.options.data(), spec.options.size());
  uint8_t pseudo[12];
  memcpy(pseudo, &ip->saddr, 4);
  memcpy(pseudo + 4, &ip->daddr, 4);
  pseudo[8] = 0;
  pseudo[9] = IPPROTO_TCP;
  pseudo[10] = static_cast<uint8_t>(tcpLen >> 8);
  pseudo[11] = static_cast<uint8_t>(tcpLen);
  tcp->check = htons(FoldChecksum(SumWords(tcpBytes, tcpLen, SumWords(pseudo, sizeof pseudo, 0))));
  return pkt;
}

SysError SendSegment(const SegmentSpec& spec) {
  Fd raw(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
  if (!raw.valid()) return Fail("socket", errno, "raw IPv4");
  if (spec.mark != 0 && setsockopt(raw.get(), SOL_SOCKET, SO_MARK, &spec.mark, sizeof spec.mark) < 0)
    return Fail("setsockopt", errno, "SO_MARK");
  std::vector<uint8_t> pkt = BuildSegment(spec);
  if (sendto(raw.get(), pkt.data(), pkt.size(), 0, reinterpret_cast<const sockaddr*>(&spec.remote), sizeof spec.remote) < 0)
    return Fail("sendto", errno, "TCP segment");
  return {};
}

Napi::Value SendTcpSegment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    Napi::TypeError::New(env, "sendTcpSegment expects an object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  SegmentSpec spec;
  std::string localAddress, remoteAddress;
  uint32_t localPort, remotePort;
  if (!GetString(o, "localAddress", &localAddress) || !GetUint32(o, "localPort", &localPort) ||
      !GetString(o, "remoteAddress", &remoteAddress) || !GetUint32(o, "remotePort", &remotePort) ||
      !GetUint32(o, "seq", &spec.seq) || !GetUint32(o, "ack", &spec.ack) || !GetUint32(o, "flags", &spec.flags) ||
      !GetUint32(o, "window", &spec.window))
    return env.Undefined();
  if (o.Has("mark") && !GetUint32(o, "mark", &spec.mark)) return env.Undefined();
  if (!ToSockaddr(localAddress, localPort, &spec.local) || !ToSockaddr(remoteAddress, remotePort, &spec.remote)) {
    Napi::TypeError::New(env, "sendTcpSegment: addresses must be IPv4 and ports 0..65535").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Value options = o.Get("options");
  if (!options.IsBuffer()) {
    Napi::TypeError::New(env, "sendTcpSegment: options must be a Buffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<uint8_t> bytes = options.As<Napi::Buffer<uint8_t>>();
  if (bytes.Length() > kMaxOptions || bytes.Length() % 4 != 0 || spec.flags > 0xFF || spec.window > 0xFFFF) {
    Napi::RangeError::New(env, "sendTcpSegment: options must be a multiple of 4 bytes, at most 40; flags 8 bits; window 16 bits")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  spec.options.assign(bytes.Data(), bytes.Data() + bytes.Length());
  if (SysError e = SendSegment(spec)) return ThrowNativeError(env, e);
  return env.Undefined();
}

/* One captured segment, copied out of the packet for the JS thread. */
struct Captured {
  uint32_t saddr = 0, daddr = 0, seq = 0, ack = 0;
  uint16_t sport = 0, dport = 0, window = 0;
  uint8_t flags = 0;
  int ifindex = 0;
  std::vector<uint8_t> options;
  SysError error;
};

/* Classic BPF over the IPv4 header; every failed test jumps to the final "drop". */
std::vector<sock_filter> MigrateSynFilter(uint32_t address, uint16_t exid) {
  constexpr uint8_t kDrop = 17;
  auto toDrop = [](uint8_t at) { return static_cast<uint8_t>(kDrop - at - 1); };
  return {
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9),                       // 0 protocol
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, toDrop(1)),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 16),                      // 2 destination address
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, address, 0, toDrop(3)),
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6),                       // 4 fragment offset
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, toDrop(5), 0),
      BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),                      // 6 X = IP header length
      BPF_STMT(BPF_LD | BPF_B | BPF_IND, 13),                      // 7 TCP flags
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, TH_SYN | TH_ACK),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TH_SYN, 0, toDrop(9)),   // 9 SYN without ACK
      BPF_STMT(BPF_LD | BPF_B | BPF_IND, 12),                      // 10 data offset << 4
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 13 << 4, 0, toDrop(11)), // 11 room for 32 option bytes
      BPF_STMT(BPF_LD | BPF_B | BPF_IND, 20),                      // 12 first option kind
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kMigrateKind, 0, toDrop(13)),
      BPF_STMT(BPF_LD | BPF_H | BPF_IND, 22),                      // 14 its ExID
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, exid, 0, toDrop(15)),
      BPF_STMT(BPF_RET | BPF_K, 0xFFFF),                           // 16 keep
      BPF_STMT(BPF_RET | BPF_K, 0),                                // 17 drop
  };
}

/* Re-checks the filter's promises in code and copies the fields out; false to ignore. */
bool ParseMigrateSyn(const uint8_t* pkt, size_t len, uint32_t address, uint16_t exid, Captured* out) {
  if (len < kIpHeader) return false;
  const iphdr* ip = reinterpret_cast<const iphdr*>(pkt);
  const size_t ipLen = ip->ihl * 4u, total = ntohs(ip->tot_len);
  if (ip->version != 4 || ip->protocol != IPPROTO_TCP || ip->daddr != address || total > len || ipLen < kIpHeader ||
      ipLen + kTcpHeader > total || (ntohs(ip->frag_off) & 0x1fff) != 0)
    return false;
  const uint8_t* tcpBytes = pkt + ipLen;
  const tcphdr* tcp = reinterpret_cast<const tcphdr*>(tcpBytes);
  const size_t tcpLen = tcp->doff * 4u;
  if (tcpLen < kTcpHeader + 4 || ipLen + tcpLen > total) return false;
  if ((tcpBytes[13] & (TH_SYN | TH_ACK)) != TH_SYN) return false;
  if (tcpBytes[20] != kMigrateKind || ((tcpBytes[22] << 8) | tcpBytes[23]) != exid) return false;
  out->saddr = ip->saddr;
  out->daddr = ip->daddr;
  out->sport = ntohs(tcp->source);
  out->dport = ntohs(tcp->dest);
  out->seq = ntohl(tcp->seq);
  out->ack = ntohl(tcp->ack_seq);
  out->window = ntohs(tcp->window);
  out->flags = tcpBytes[13];
  out->options.assign(tcpBytes + kTcpHeader, tcpBytes + tcpLen);
  return true;
}

std::string AddressText(uint32_t networkOrder) {
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &networkOrder, text, sizeof text);
  return text;
}

void DeliverToJs(Napi::Env env, Napi::Function onSegment, void*, Captured* captured) {
  std::unique_ptr<Captured> segment(captured);
  if (env == nullptr || onSegment.IsEmpty()) return;
  if (segment->error) {
    onSegment.Call({MakeNativeError(env, segment->error).Value(), env.Null()});
    return;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("sourceAddress", AddressText(segment->saddr));
  o.Set("sourcePort", segment->sport);
  o.Set("destinationAddress", AddressText(segment->daddr));
  o.Set("destinationPort", segment->dport);
  o.Set("seq", segment->seq);
  o.Set("ack", segment->ack);
  o.Set("window", segment->window);
  o.Set("flags", segment->flags);
  o.Set("ifindex", segment->ifindex);
  o.Set("options", Napi::Buffer<uint8_t>::Copy(env, segment->options.data(), segment->options.size()));
  onSegment.Call({env.Null(), o});
}

using SegmentFunction = Napi::TypedThreadSafeFunction<void, Captured, DeliverToJs>;

class MigrateCapture {
 public:
  MigrateCapture(Fd socket, Fd wakeup, uint32_t address, uint16_t exid)
      : socket_(std::move(socket)), wakeup_(std::move(wakeup)), address_(address), exid_(exid) {}

  ~MigrateCapture() { Stop(); }

  void Start(SegmentFunction deliver) {
    deliver_ = std::move(deliver);
    thread_ = std::thread([this] { Run(); });
  }

  void Stop() {
    if (stopped_.exchange(true)) return;
    // Wakes the thread at once; were the write to fail, its poll timeout would still end it.
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t woken = write(wakeup_.get(), &one, sizeof one);
    if (thread_.joinable()) thread_.join();
    deliver_.Release();
  }

  uint64_t dropped() const { return dropped_.load(); }

 private:
  void Queue(Captured* item) {
    if (deliver_.NonBlockingCall(item) != napi_ok) {
      delete item;
      dropped_++;
    }
  }

  void Run() {
    uint8_t buf[2048];
    pollfd fds[2] = {{socket_.get(), POLLIN, 0}, {wakeup_.get(), POLLIN, 0}};
    while (!stopped_.load()) {
      int ready = poll(fds, 2, 1000);
      if (ready < 0 && errno != EINTR) {
        auto* failed = new Captured();
        failed->error = Fail("poll", errno, "Migrate SYN capture");
        Queue(failed);
        return;
      }
      if (ready <= 0 || (fds[1].revents & POLLIN)) continue;
      sockaddr_ll from{};
      socklen_t fromLen = sizeof from;
      ssize_t n = recvfrom(socket_.get(), buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fromLen);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        auto* failed = new Captured();
        failed->error = Fail("recvfrom", errno, "Migrate SYN capture");
        Queue(failed);
        return;
      }
      if (from.sll_pkttype == PACKET_OUTGOING) continue;
      auto* item = new Captured();
      if (!ParseMigrateSyn(buf, static_cast<size_t>(n), address_, exid_, item)) {
        delete item;
        continue;
      }
      item->ifindex = from.sll_ifindex;
      Queue(item);
    }
  }

  Fd socket_, wakeup_;
  uint32_t address_;
  uint16_t exid_;
  SegmentFunction deliver_;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  std::atomic<uint64_t> dropped_{0};
};

SysError OpenMigrateCapture(const sockaddr_in& address, uint16_t exid, const std::string& ifname, Fd* socketOut, Fd* wakeupOut) {
  Fd sock;
  if (SysError e = OpenIpv4Capture(MigrateSynFilter(ntohl(address.sin_addr.s_addr), exid), ifname, &sock)) return e;
  Fd wakeup(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wakeup.valid()) return Fail("eventfd");
  *socketOut = std::move(sock);
  *wakeupOut = std::move(wakeup);
  return {};
}

Napi::Value CaptureMigrateSyns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "captureMigrateSyns expects (options, onSegment)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  std::string address, ifname;
  uint32_t exid;
  if (!GetString(o, "address", &address) || !GetString(o, "ifname", &ifname) || !GetUint32(o, "exid", &exid)) return env.Undefined();
  sockaddr_in where;
  if (!ToSockaddr(address, 0, &where) || exid > 0xFFFF) {
    Napi::TypeError::New(env, "captureMigrateSyns: address must be IPv4 and exid 16 bits").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Fd sock, wakeup;
  if (SysError e = OpenMigrateCapture(where, static_cast<uint16_t>(exid), ifname, &sock, &wakeup)) return ThrowNativeError(env, e);
  auto* capture = new MigrateCapture(std::move(sock), std::move(wakeup), where.sin_addr.s_addr, static_cast<uint16_t>(exid));
  capture->Start(SegmentFunction::New(env, info[1].As<Napi::Function>(), "wedge:migrate-capture", kQueueLimit, 1));
  Napi::Object handle = Napi::Object::New(env);
  Napi::Function stop = Napi::Function::New(
      env, [](const Napi::CallbackInfo& call) {
        static_cast<MigrateCapture*>(call.Data())->Stop();
        return call.Env().Undefined();
      },
      "stop", capture);
  Napi::Function dropped = Napi::Function::New(
      env, [](const Napi::CallbackInfo& call) {
        return Napi::Number::New(call.Env(), static_cast<double>(static_cast<MigrateCapture*>(call.Data())->dropped()));
      },
      "dropped", capture);
  // The capture lives as long as the handle, which holds both functions that point at it.
  handle.AddFinalizer([](Napi::Env, MigrateCapture* owned) { delete owned; }, capture);
  stop.Set("handle", handle);
  dropped.Set("handle", handle);
  handle.Set("stop", stop);
  handle.Set("dropped", dropped);
  return handle;
}

}  // namespace

void InitMigrate(Napi::Env env, Napi::Object exports) {
  exports.Set("sendTcpSegment", Napi::Function::New(env, SendTcpSegment));
  exports.Set("captureMigrateSyns", Napi::Function::New(env, CaptureMigrateSyns));
}

}  // namespace wedge
