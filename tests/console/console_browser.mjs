// What the console's browser scripts share: headless Debian Chromium through playwright-core
// (the project's locked npm packages, RP_DIR), contexts with JavaScript off, the login through
// the provider's password page, full-page screenshots and form submits that await the next page.
import { createRequire } from 'node:module';
const require = createRequire(process.env.RP_DIR + '/package.json');
const { chromium } = require('playwright-core');

export async function openConsole(cfg) {
  const browser = await chromium.launch({
    executablePath: cfg.chromium || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const result = { shots: [] };

  async function as(login) {
    const context = await browser.newContext({ locale: 'zh-CN', javaScriptEnabled: false,
                                               viewport: { width: 1100, height: 900 } });
    const page = await context.newPage();
    await page.goto(cfg.base + '/console/login');
    await page.getByLabel('账号', { exact: true }).fill(login);
    await page.getByLabel('密码', { exact: true }).fill(cfg.password);
    await Promise.all([page.waitForURL((u) => u.pathname.startsWith('/console/') && !u.pathname.endsWith('/callback')),
                       page.click('#password-submit')]);
    return { context, page };
  }

  async function shot(page, name) {
    await page.screenshot({ path: `${cfg.shots}/${name}`, fullPage: true });
    result.shots.push(name);
  }

  async function submit(page, selector) {
    await Promise.all([page.waitForLoadState('load'), page.waitForNavigation(), page.click(selector)]);
  }

  return { browser, result, as, shot, submit };
}
