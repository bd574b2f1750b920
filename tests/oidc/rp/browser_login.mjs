// Headless Chromium (playwright-core) logs in through govtrust's real login page:
// first with a password (then consent), then with certificate login; each run must land on
// the client's redirect URI with a code. Usage: node browser_login.mjs '<json config>'
import { createSign } from 'node:crypto';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: cfg.chromium || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const result = {};
try {
  const context = await browser.newContext({ locale: 'zh-CN' });
  const page = await context.newPage();
  // The redirect URI is a loopback URL on the same server (answering 404 is fine): what
  // matters is where the browser lands. (Playwright cannot intercept redirect targets.)
  // 1. Password login.
  await page.goto(cfg.password_url);
  result.login_title = await page.title();
  await page.getByLabel('账号', { exact: true }).fill(cfg.login_name);
  await page.getByLabel('密码', { exact: true }).fill(cfg.password);
  await Promise.all([page.waitForLoadState('load'), page.click('#password-submit')]);
  if (await page.locator('#consent-allow').count()) {
    await Promise.all([page.waitForURL((url) => url.href.startsWith(cfg.redirect_uri)), page.click('#consent-allow')]);
  } else {
    await page.waitForURL((url) => url.href.startsWith(cfg.redirect_uri));
  }
  result.password_landing = page.url();

  // 2. Certificate login (prompt=login forces the login page again).
  await page.goto(cfg.certificate_url);
  const challenge = (await page.locator('#challenge').textContent()).trim();
  const signer = createSign('SHA256');
  signer.update(challenge, 'utf8');
  const signature = signer.sign(cfg.certificate_key_pem).toString('base64');
  await page.locator('#certificate').fill(cfg.certificate_pem);
  await page.locator('#signature').fill(signature);
  await Promise.all([page.waitForLoadState('load'), page.click('#certificate-submit')]);
  if (await page.locator('#consent-allow').count()) {
    await Promise.all([page.waitForURL((url) => url.href.startsWith(cfg.redirect_uri)), page.click('#consent-allow')]);
  } else {
    await page.waitForURL((url) => url.href.startsWith(cfg.redirect_uri));
  }
  result.certificate_landing = page.url();
  const cookies = await context.cookies();
  result.session_cookie = cookies.find((c) => c.name === 'gt_session') || null;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
