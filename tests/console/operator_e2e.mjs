// Headless Chromium (playwright-core, Debian's /usr/bin/chromium; JavaScript off) on the
// console's operator page: the operator logs in, sees the page in Chinese and English, presses
// "verify now" and the step pages refresh themselves (meta refresh) until the result.
// Screenshots go to cfg.shots. Usage: node operator_e2e.mjs '<json config>'; prints one JSON line.
import { createRequire } from 'node:module';
const require = createRequire(process.env.RP_DIR + '/package.json');
const { chromium } = require('playwright-core');

const cfg = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: cfg.chromium || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const result = { shots: [] };

async function shot(page, name) {
  await page.screenshot({ path: `${cfg.shots}/${name}`, fullPage: true });
  result.shots.push(name);
}

try {
  const context = await browser.newContext({ locale: 'zh-CN', javaScriptEnabled: false,
                                             viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  await page.goto(cfg.base + '/console/login');
  await page.getByLabel('账号', { exact: true }).fill(cfg.login);
  await page.getByLabel('密码', { exact: true }).fill(cfg.password);
  await Promise.all([page.waitForURL((u) => u.pathname.startsWith('/console/') && !u.pathname.endsWith('/callback')),
                     page.click('#password-submit')]);
  await page.goto(cfg.base + '/console/operator');
  result.cas = await page.locator('#cas tbody tr').count();
  result.keystore = await page.locator('#keystore').getAttribute('data-reachable');
  await shot(page, 'console-operator-zh.png');
  await page.goto(cfg.base + '/console/operator?lang=en');
  await shot(page, 'console-operator-en.png');
  await Promise.all([page.waitForURL((u) => u.pathname.endsWith('/audit/verify')), page.click('#verify-now')]);
  await page.locator('#verify-result').waitFor({ timeout: 60000 });
  result.verify = await page.locator('#verify-result').getAttribute('data-result');
  result.progress = await page.locator('#verify-progress').getAttribute('value');
  await shot(page, 'console-operator-verify-en.png');
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
