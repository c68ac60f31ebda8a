/*
 * Packet capture shared by the probe (the client's answer) and the TCP Migrate agent (Migrate
 * SYNs, handshake SYN-ACKs): an AF_PACKET socket that sees IPv4 packets only, filtered in the
 * kernel by a classic BPF program, bound to one interface or to all.
 *
 * The agent's captures also share their thread (StartSegmentCapture): a dedicated thread polls
 * the socket and an eventfd (the stop signal), parses each TCP segment to the watched address,
 * lets the caller's check re-confirm in code what its filter promised, and hands the segment to
 * JS through a ThreadSafeFunction with a bounded queue: when JS falls behind, segments are
 * dropped and counted rather than buffered without limit (a flood must not grow our memory).
 * Outgoing frames are skipped. stop() signals the thread, joins it and releases the function;
 * the capture lives as long as its JS handle (a finalizer stops and frees it).
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
#include <memory>
#include <thread>

#include "capture.h"

namespace wedge {

SysError OpenIpv4Capture(const std::vector<sock_filter>& code, const std::string& ifname, Fd* out) {
  // Protocol 0 until bind: a packet socket created with a protocol hooks into every device at
  // once, and re-binding it to one interface unhooks it with an RCU grace period (tens of ms).
  Fd sock(socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return Fail("socket", errno, "AF_PACKET capture");
  sock_fprog prog{static_cast<unsigned short>(code.size()), const_cast<sock_filter*>(code.data())};
  if (setsockopt(sock.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
    return Fail("setsockopt", errno, "SO_ATTACH_FILTER");
  sockaddr_ll where{};
  where.sll_family = AF_PACKET;
  where.sll_protocol = htons(ETH_P_IP);
  if (!ifname.empty()) {
    where.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (where.sll_ifindex == 0) return Fail("if_nametoindex", errno, ifname);
  }
  if (bind(sock.get(), reinterpret_cast<sockaddr*>(&where), sizeof where) < 0) return Fail("bind", errno, "AF_PACKET capture");
  *out = std::move(sock);
  return {};
}

void CloseCaptureLater(Fd capture) {
  std::thread([fd = capture.Release()] { close(fd); }).detach();
}

namespace {

constexpr size_t kIpHeader = 20, kTcpHeader = 20;
constexpr size_t kQueueLimit = 1024;

/* An unfragmented IPv4/TCP segment to `address` (network order), its fields copied out; false to ignore. */
bool ParseTcpSegment(const uint8_t* pkt, size_t len, uint32_t address, CapturedSegment* out) {
  if (len < kIpHeader) return false;
  const iphdr* ip = reinterpret_cast<const iphdr*>(pkt);
  const size_t ipLen = ip->ihl * 4u, total = ntohs(ip->tot_len);
  if (ip->version != 4 || ip->protocol != IPPROTO_TCP || ip->daddr != address || total > len || ipLen < kIpHeader ||
      ipLen + kTcpHeader > total || (ntohs(ip->frag_off) & 0x1fff) != 0)
    return false;
  const uint8_t* tcpBytes = pkt + ipLen;
  const tcphdr* tcp = reinterpret_cast<const tcphdr*>(tcpBytes);
  const size_t tcpLen = tcp->doff * 4u;
  if (tcpLen < kTcpHeader || ipLen + tcpLen > total) return false;
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

void DeliverToJs(Napi::Env env, Napi::Function onSegment, void*, CapturedSegment* captured) {
  std::unique_ptr<CapturedSegment> segment(captured);
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

using SegmentFunction = Napi::TypedThreadSafeFunction<void, CapturedSegment, DeliverToJs>;

class SegmentCapture {
 public:
  SegmentCapture(Fd socket, Fd wakeup, uint32_t address, SegmentCheck check, std::string name)
      : socket_(std::move(socket)), wakeup_(std::move(wakeup)), address_(address), check_(std::move(check)), name_(std::move(name)) {}

  ~SegmentCapture() { Stop(); }

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
  void Queue(CapturedSegment* item) {
    if (deliver_.NonBlockingCall(item) != napi_ok) {
      delete item;
      dropped_++;
    }
  }

  void QueueFailure(const char* syscall) {
    auto* failed = new CapturedSegment();
    failed->error = Fail(syscall, errno, name_);
    Queue(failed);
  }

  void Run() {
    uint8_t buf[2048];
    pollfd fds[2] = {{socket_.get(), POLLIN, 0}, {wakeup_.get(), POLLIN, 0}};
    while (!stopped_.load()) {
      int ready = poll(fds, 2, 1000);
      if (ready < 0 && errno != EINTR) return QueueFailure("poll");
      if (ready <= 0 || (fds[1].revents & POLLIN)) continue;
      sockaddr_ll from{};
      socklen_t fromLen = sizeof from;
      ssize_t n = recvfrom(socket_.get(), buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fromLen);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return QueueFailure("recvfrom");
      }
      if (from.sll_pkttype == PACKET_OUTGOING) continue;
      auto item = std::make_unique<CapturedSegment>();
      if (!ParseTcpSegment(buf, static_cast<size_t>(n), address_, item.get()) || !check_(*item)) continue;
      item->ifindex = from.sll_ifindex;
      Queue(item.release());
    }
  }

  Fd socket_, wakeup_;
  uint32_t address_;
  SegmentCheck check_;
  std::string name_;
  SegmentFunction deliver_;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace

Napi::Value StartSegmentCapture(Napi::Env env, const std::vector<sock_filter>& filter, const std::string& ifname, uint32_t address,
                                SegmentCheck check, Napi::Function onSegment, const char* name) {
  Fd sock;
  if (SysError e = OpenIpv4Capture(filter, ifname, &sock)) return ThrowNativeError(env, e);
  Fd wakeup(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wakeup.valid()) return ThrowNativeError(env, Fail("eventfd", errno, name));
  auto* capture = new SegmentCapture(std::move(sock), std::move(wakeup), address, std::move(check), name);
  capture->Start(SegmentFunction::New(env, onSegment, name, kQueueLimit, 1));
  Napi::Object handle = Napi::Object::New(env);
  Napi::Function stop = Napi::Function::New(
      env, [](const Napi::CallbackInfo& call) {
        static_cast<SegmentCapture*>(call.Data())->Stop();
        return call.Env().Undefined();
      },
      "stop", capture);
  Napi::Function dropped = Napi::Function::New(
      env, [](const Napi::CallbackInfo& call) {
        return Napi::Number::New(call.Env(), static_cast<double>(static_cast<SegmentCapture*>(call.Data())->dropped()));
      },
      "dropped", capture);
  // The capture lives as long as the handle, which holds both functions that point at it.
  handle.AddFinalizer([](Napi::Env, SegmentCapture* owned) { delete owned; }, capture);
  stop.Set("handle", handle);
  dropped.Set("handle", handle);
  handle.Set("stop", stop);
  handle.Set("dropped", dropped);
  return handle;
}

}  // namespace wedge
