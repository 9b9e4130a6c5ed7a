import { BlockList, isIPv4 } from 'node:net';

/**
 * Networks a home gateway may serve without an API key: loopback, RFC 1918, link-local,
 * IPv6 ULA, and 100.64.0.0/10 (carrier-grade NAT, used by VPNs such as Tailscale).
 */
const privateNets = new BlockList();
privateNets.addSubnet('127.0.0.0', 8, 'ipv4');
privateNets.addSubnet('10.0.0.0', 8, 'ipv4');
privateNets.addSubnet('172.16.0.0', 12, 'ipv4');
privateNets.addSubnet('192.168.0.0', 16, 'ipv4');
privateNets.addSubnet('169.254.0.0', 16, 'ipv4');
privateNets.addSubnet('100.64.0.0', 10, 'ipv4');
privateNets.addAddress('::1', 'ipv6');
privateNets.addSubnet('fc00::', 7, 'ipv6');
privateNets.addSubnet('fe80::', 10, 'ipv6');

export function isPrivateAddress(address: string | undefined): boolean {
  if (!address) return false;
  let ip = address.replace(/%.*$/, ''); // zone index of link-local addresses
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip); // IPv4 on a dual-stack socket
  if (mapped) ip = mapped[1];
  try {
    return privateNets.check(ip, isIPv4(ip) ? 'ipv4' : 'ipv6');
  } catch {
    return false;
  }
}
