// The network guard of a cluster without a real node: its rules and which tables are its family.
import { describe, expect, test } from 'vitest';
import { guardTable, hostNetwork, netGuardOwner, netGuardRules } from './node/host.ts';

describe('network guard without a real node', () => {
  test('drops, after NAT, what goes to kwok pod and Service addresses by anything but lo', () => {
    const rules = netGuardRules('gso_net_guard_42_1');
    expect(rules).toMatch(/^table inet gso_net_guard_42_1 \{/);
    expect(rules).toContain('type filter hook postrouting priority 120; policy accept;');
    expect(rules).toContain(
      `ip daddr { ${hostNetwork.serviceCidr}, ${hostNetwork.kwokPodCidr} } oifname != "lo" counter drop`,
    );
  });

  test('its tables name their owner PID; no other table is of the family', () => {
    expect(netGuardOwner('inet gso_net_guard_1234_2')).toBe(1234);
    for (const other of [
      `inet ${guardTable}`,
      'ip gso_net_guard_1234_2',
      'inet gso_net_guard_1234',
      'inet gso_net_guard_x_1',
      'ip kube-proxy',
    ])
      expect(netGuardOwner(other)).toBeUndefined();
  });
});
