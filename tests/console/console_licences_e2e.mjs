// Headless Chromium (playwright-core, Debian's /usr/bin/chromium; JavaScript off) on the
// console's self-service pages: the company's representative lists its licences, opens the
// business licence (QR, PDF, who checked), creates an access code (shown once) and revokes it;
// the agent sees only his own permit; the stranger sees his certificate (the refusals are the
// HTTP tests', each with nothing changed). Screenshots (zh and en) go to cfg.shots.
// Usage: node console_licences_e2e.mjs '<json config>'; prints one JSON line of results.
import { openConsole } from './console_browser.mjs';

const cfg = JSON.parse(process.argv[2]);
const { browser, result, as, shot, submit } = await openConsole(cfg);

try {
  const company = await as('company');
  await company.page.goto(cfg.base + '/console/licences?lang=zh-CN');
  result.company_rows = await company.page.locator(`tr[data-licence="${cfg.company_licence}"]`).count();
  result.company_sees_permit = await company.page.locator(`tr[data-licence="${cfg.agent_permit}"]`).count();
  await shot(company.page, 'console-licences-zh.png');
  await company.page.goto(cfg.base + '/console/licences?lang=en');
  await shot(company.page, 'console-licences-en.png');

  await company.page.goto(`${cfg.base}/console/licences/${cfg.company_licence}?lang=zh-CN`);
  result.qr_shown = await company.page.locator('#qr').count() === 1;
  result.qr_width = await company.page.locator('#qr').evaluate((img) => img.complete ? img.naturalWidth : -1);
  result.pdf_link = await company.page.locator('#download-pdf').count() === 1;
  result.checks = await company.page.locator('#checks tr.check').count();
  await company.page.fill('#code-grantee', '福州市税务局');
  await company.page.fill('#code-purpose', '办理税务登记');
  await company.page.fill('#code-until', cfg.code_until);
  await submit(company.page, '#create-code');
  result.code = (await company.page.locator('#access-code').textContent()).trim();
  await shot(company.page, 'console-licence-zh.png');
  await company.page.goto(`${cfg.base}/console/licences/${cfg.company_licence}?lang=en`);
  result.code_shown_again = await company.page.locator('#access-code').count();
  result.active_codes = await company.page.locator('#grants tr[data-state="active"]').count();
  await shot(company.page, 'console-licence-en.png');
  await submit(company.page, '#grants tr[data-state="active"] button');
  result.revoked_codes = await company.page.locator('#grants tr[data-state="revoked"]').count();

  const agent = await as('agent');
  await agent.page.goto(cfg.base + '/console/licences?lang=zh-CN');
  result.agent_rows = await agent.page.locator('tr[data-licence]').count();
  result.agent_sees_permit = await agent.page.locator(`tr[data-licence="${cfg.agent_permit}"]`).count();

  const stranger = await as('stranger');
  await stranger.page.goto(cfg.base + '/console/certificates?lang=zh-CN');
  result.certificates = await stranger.page.locator('#certificates tr[data-fingerprint]').count();
  await shot(stranger.page, 'console-certificates-zh.png');
  await stranger.page.goto(cfg.base + '/console/certificates?lang=en');
  await shot(stranger.page, 'console-certificates-en.png');
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
