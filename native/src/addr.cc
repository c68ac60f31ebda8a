/*
 * Theory of operation: tell a LAN segment that an IPv4 address now lives here.
 *
 * Goal: after a replica adopts a dead peer's service address (added by native/addr.ts with
 * `ip addr add`), neighbours still map that address to the dead peer's MAC. A gratuitous ARP
 * updates their caches at once instead of after their entries go stale.
 *
 * Data flow: one AF_PACKET datagram socket on the interface sends two broadcast frames with
 * sender = target = the address and sender MAC = the interface's MAC: an ARP announcement
 * (request, RFC 5227) and an ARP reply, since neighbour implementations differ in which one
 * they let override an existing entry. Sending is a non-blocking datagram send: synchronous.
 *
 * Limits: Ethernet-like interfaces with 6-byte addresses; IPv4.
 */
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>

#include "common.h"

namespace wedge {
namespace {

/* Ethernet ARP for IPv4, as on the wire (RFC 826). */
struct __attribute__((packed)) ArpPacket {
  uint16_t hardwareType, protocolType;
  uint8_t hardwareLen, protocolLen;
  uint16_t operation;
  uint8_t senderMac[6];
  uint32_t senderIp;
  uint8_t targetMac[6];
  uint32_t targetIp;
};

SysError InterfaceMac(int sock, const std::string& ifname, uint8_t mac[6]) {
  ifreq req{};
  if (ifname.size() >= sizeof req.ifr_name) return Fail("ioctl", ENAMETOOLONG, ifname);
  memcpy(req.ifr_name, ifname.c_str(), ifname.size());
  if (ioctl(sock, SIOCGIFHWADDR, &req) < 0) return Fail("ioctl", errno, "SIOCGIFHWADDR " + ifname);
  memcpy(mac, req.ifr_hwaddr.sa_data, 6);
  return {};
}

SysError SendGratuitousArp(const std::string& ifname, const in_addr& ip) {
  Fd sock(socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP)));
  if (!sock.valid()) return Fail("socket", errno, "AF_PACKET");
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_ifindex = if_nametoindex(ifname.c_str());
  if (to.sll_ifindex == 0) return Fail("if_nametoindex", errno, ifname);
  to.sll_halen = 6;
  memset(to.sll_addr, 0xFF, 6);

  ArpPacket arp{};
  arp.hardwareType = htons(ARPHRD_ETHER);
  arp.protocolType = htons(ETH_P_IP);
  arp.hardwareLen = 6;
  arp.protocolLen = 4;
  if (SysError e = InterfaceMac(sock.get(), ifname, arp.senderMac)) return e;
  arp.senderIp = arp.targetIp = ip.s_addr;
  for (uint16_t operation : {ARPOP_REQUEST, ARPOP_REPLY}) {
    arp.operation = htons(operation);
    memset(arp.targetMac, operation == ARPOP_REPLY ? 0xFF : 0, 6);
    if (sendto(sock.get(), &arp, sizeof arp, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0)
      return Fail("sendto", errno, "gratuitous ARP on " + ifname);
  }
  return {};
}

Napi::Value GratuitousArp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "gratuitousArp(ifname, ipv4)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string ifname = info[0].As<Napi::String>().Utf8Value();
  in_addr ip;
  if (inet_pton(AF_INET, info[1].As<Napi::String>().Utf8Value().c_str(), &ip) != 1) {
    Napi::TypeError::New(env, "gratuitousArp: not an IPv4 address").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  SysError e = SendGratuitousArp(ifname, ip);
  return e ? ThrowNativeError(env, e) : env.Undefined();
}

}  // namespace

void InitAddr(Napi::Env env, Napi::Object exports) {
  exports.Set("gratuitousArp", Napi::Function::New(env, GratuitousArp));
}

}  // namespace wedge
