/*
 * Theory of operation: the raw packet plumbing of TCP Migrate.
 *
 * Goal: let a candidate server send a Migrate SYN (and the client agent its SYN-ACK or RST
 * answers) with exactly the TCP options TypeScript built (migrate/option.ts), and let the
 * agent see every Migrate SYN and handshake SYN-ACK addressed to its host without blocking the
 * event loop. Policy (what the option says, whether it is valid, what to answer) stays in
 * TypeScript.
 *
 * Sending (sendTcpSegment): one IPv4 + TCP segment built by hand in an IPPROTO_RAW socket
 * (IP_HDRINCL): TCP checksum over the pseudo-header, header and options computed here; the
 * kernel fills the IP id and header checksum. Options are passed as bytes, must be a multiple of
 * 4 and at most 40. Synchronous: a raw sendto does not wait on the network.
 *
 * Capturing, on the agent's host, through capture.cc's capture thread (AF_PACKET, cooked IPv4,
 * outgoing frames skipped, a bounded queue to JS), each with its own classic BPF filter whose
 * promise is checked again in code:
 *   captureMigrateSyns: unfragmented TCP segments to the agent's address with SYN set and ACK
 *     clear, a data offset leaving room for the 32-byte Migrate option, and as FIRST option kind
 *     253 with the given ExID (option.ts always puts it first). TypeScript parses and verifies it.
 *   captureSynAcks: the second step of every handshake the client host makes with a service:
 *     SYN and ACK set, RST clear, to the agent's address, from one of the service ports (at
 *     most 64). The agent learns each connection's 4-tuple and both ISNs from it.
 *
 * Limits: IPv4, Linux.
 */
#include <linux/filter.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "capture.h"

namespace wedge {
namespace {

constexpr size_t kIpHeader = 20, kTcpHeader = 20, kMaxOptions = 40;
constexpr uint8_t kMigrateKind = 253;
/* Jump offsets in classic BPF are 8 bits: the SYN-ACK filter lists at most this many ports. */
constexpr uint32_t kMaxSynAckPorts = 64;

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

/* Instructions 0-6 of both filters: TCP to `address`, not a fragment; failures jump to
 * instruction `drop`; ends with X = the IP header length. */
std::vector<sock_filter> TcpToAddress(uint32_t address, uint8_t drop) {
  auto toDrop = [drop](uint8_t at) { return static_cast<uint8_t>(drop - at - 1); };
  return {
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9),                       // 0 protocol
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, toDrop(1)),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 16),                      // 2 destination address
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, address, 0, toDrop(3)),
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6),                       // 4 fragment offset
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, toDrop(5), 0),
      BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),                      // 6 X = IP header length
  };
}

/* Classic BPF over the IPv4 header; every failed test jumps to the final "drop". */
std::vector<sock_filter> MigrateSynFilter(uint32_t address, uint16_t exid) {
  constexpr uint8_t kDrop = 17;
  auto toDrop = [](uint8_t at) { return static_cast<uint8_t>(kDrop - at - 1); };
  std::vector<sock_filter> code = TcpToAddress(address, kDrop);
  code.insert(code.end(), {
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
  });
  return code;
}

bool IsMigrateSyn(const CapturedSegment& s, uint16_t exid) {
  return (s.flags & (TH_SYN | TH_ACK)) == TH_SYN && s.options.size() >= 4 && s.options[0] == kMigrateKind &&
         ((s.options[2] << 8) | s.options[3]) == exid;
}

/* Classic BPF: TCP to `address`, not a fragment, SYN and ACK set and RST clear, from one of
 * `ports`. The port tests jump to "keep"; falling through the last one reaches "drop". */
std::vector<sock_filter> SynAckFilter(uint32_t address, const std::vector<uint16_t>& ports) {
  const uint8_t drop = static_cast<uint8_t>(11 + ports.size()), keep = static_cast<uint8_t>(drop + 1);
  auto toDrop = [drop](uint8_t at) { return static_cast<uint8_t>(drop - at - 1); };
  std::vector<sock_filter> code = TcpToAddress(address, drop);
  code.insert(code.end(), {
      BPF_STMT(BPF_LD | BPF_B | BPF_IND, 13),                      // 7 TCP flags
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, TH_SYN | TH_ACK | TH_RST),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TH_SYN | TH_ACK, 0, toDrop(9)),
      BPF_STMT(BPF_LD | BPF_H | BPF_IND, 0),                       // 10 source port
  });
  for (uint16_t port : ports) {
    const auto at = static_cast<uint8_t>(code.size());
    code.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port, static_cast<uint8_t>(keep - at - 1), 0));
  }
  code.push_back(BPF_STMT(BPF_RET | BPF_K, 0));       // drop
  code.push_back(BPF_STMT(BPF_RET | BPF_K, 0xFFFF));  // keep
  return code;
}

bool IsSynAckFrom(const CapturedSegment& s, const std::vector<uint16_t>& ports) {
  return (s.flags & (TH_SYN | TH_ACK | TH_RST)) == (TH_SYN | TH_ACK) && std::find(ports.begin(), ports.end(), s.sport) != ports.end();
}

/* The options object's address (IPv4) and ifname; false after throwing a TypeError. */
bool GetCaptureTarget(const Napi::Object& o, const char* what, sockaddr_in* where, std::string* ifname) {
  std::string address;
  if (!GetString(o, "address", &address) || !GetString(o, "ifname", ifname)) return false;
  if (ToSockaddr(address, 0, where)) return true;
  Napi::TypeError::New(o.Env(), std::string(what) + ": address must be IPv4").ThrowAsJavaScriptException();
  return false;
}

Napi::Value CaptureMigrateSyns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "captureMigrateSyns expects (options, onSegment)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  sockaddr_in where;
  std::string ifname;
  uint32_t exid;
  if (!GetCaptureTarget(o, "captureMigrateSyns", &where, &ifname) || !GetUint32(o, "exid", &exid)) return env.Undefined();
  if (exid > 0xFFFF) {
    Napi::TypeError::New(env, "captureMigrateSyns: exid must be 16 bits").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const auto id = static_cast<uint16_t>(exid);
  return StartSegmentCapture(env, MigrateSynFilter(ntohl(where.sin_addr.s_addr), id), ifname, where.sin_addr.s_addr,
                             [id](const CapturedSegment& s) { return IsMigrateSyn(s, id); }, info[1].As<Napi::Function>(),
                             "Migrate SYN capture");
}

Napi::Value CaptureSynAcks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "captureSynAcks expects (options, onSegment)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  sockaddr_in where;
  std::string ifname;
  if (!GetCaptureTarget(o, "captureSynAcks", &where, &ifname)) return env.Undefined();
  Napi::Value list = o.Get("ports");
  if (!list.IsArray() || list.As<Napi::Array>().Length() == 0 || list.As<Napi::Array>().Length() > kMaxSynAckPorts) {
    Napi::RangeError::New(env, "captureSynAcks: ports must be an array of 1 to 64 ports").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array array = list.As<Napi::Array>();
  std::vector<uint16_t> ports;
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value port = array.Get(i);
    if (!port.IsNumber() || port.As<Napi::Number>().Uint32Value() > 0xFFFF) {
      Napi::TypeError::New(env, "captureSynAcks: ports must be numbers 0..65535").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    ports.push_back(static_cast<uint16_t>(port.As<Napi::Number>().Uint32Value()));
  }
  return StartSegmentCapture(env, SynAckFilter(ntohl(where.sin_addr.s_addr), ports), ifname, where.sin_addr.s_addr,
                             [ports](const CapturedSegment& s) { return IsSynAckFrom(s, ports); }, info[1].As<Napi::Function>(),
                             "SYN-ACK capture");
}

}  // namespace

void InitMigrate(Napi::Env env, Napi::Object exports) {
  exports.Set("sendTcpSegment", Napi::Function::New(env, SendTcpSegment));
  exports.Set("captureMigrateSyns", Napi::Function::New(env, CaptureMigrateSyns));
  exports.Set("captureSynAcks", Napi::Function::New(env, CaptureSynAcks));
}

}  // namespace wedge
