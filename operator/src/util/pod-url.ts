/** An http URL on a pod's IP (an IPv6 address in brackets), as the kubelet's httpGet probe builds it. */
export function podUrl(ip: string, port: number | string, path: string): string {
  return `http://${ip.includes(':') ? `[${ip}]` : ip}:${port}${path}`;
}
