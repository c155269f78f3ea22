import { expect, test } from 'vitest';

test('the project runs under the Node 24 it brings (node@24 devDependency)', () => {
  expect(process.versions.node.split('.')[0]).toBe('24');
});
