// Headless Chromium (playwright-core, Debian's /usr/bin/chromium; JavaScript off in every
// page) drives the console as its users would. Phase "a": the representative applies
// (preview first), the reviewer approves (and sees no maker action), the maker makes after
// the preview, filing files and issues, the representative grants use to the agent.
// Phase "b" (after the agent sealed a PDF over gRPC): the representative sees the use and
// reports the loss, the maker re-makes the seal. Screenshots (zh and en) go to cfg.shots.
// Usage: node console_e2e.mjs '<json config>'; prints one JSON line of results.
import { openConsole } from './console_browser.mjs';

const cfg = JSON.parse(process.argv[2]);
const { browser, result, as, shot, submit } = await openConsole(cfg);

async function seal(page, id, lang = 'zh-CN') {
  await page.goto(`${cfg.base}/console/seals/${id}?lang=${lang}`);
}

try {
  if (cfg.phase === 'a') {
    const company = await as('company');
    await company.page.goto(cfg.base + '/console/apply');
    await company.page.selectOption('#apply-kind', 'contract');
    await company.page.fill('#apply-name', cfg.seal_name);
    await company.page.selectOption('#apply-algorithm', 'ec-p256');
    await company.page.fill('#apply-reason', '新设合同专用章');
    await submit(company.page, '#apply-preview');
    result.preview_shown = await company.page.locator('#appearance').count() === 1;
    await shot(company.page, 'console-apply-zh.png');
    await submit(company.page, '#apply-submit');
    result.seal_id = (await company.page.locator('#seal-id').textContent()).trim();
    result.applied_status = await company.page.locator('#seal-status').getAttribute('data-status');

    const reviewer = await as('reviewer');
    await reviewer.page.goto(cfg.base + '/console/queue/review');
    result.in_review_queue = await reviewer.page.locator(`tr[data-seal="${result.seal_id}"]`).count() === 1;
    await shot(reviewer.page, 'console-queue-zh.png');
    await reviewer.page.goto(cfg.base + '/console/queue/review?lang=en');
    await shot(reviewer.page, 'console-queue-en.png');
    await seal(reviewer.page, result.seal_id);
    result.reviewer_sees_make = await reviewer.page.locator('#op-make').count();
    await reviewer.page.fill('#approve-reason', '材料齐全');
    await submit(reviewer.page, '#op-approve');
    result.approved_status = await reviewer.page.locator('#seal-status').getAttribute('data-status');
    result.reviewer_sees_make_after = await reviewer.page.locator('#op-make').count();

    const maker = await as('maker');
    await seal(maker.page, result.seal_id);
    await submit(maker.page, 'a#op-make');
    await shot(maker.page, 'console-make-preview-zh.png');
    await submit(maker.page, 'button#op-make');
    result.made_status = await maker.page.locator('#seal-status').getAttribute('data-status');

    const filing = await as('filing');
    await seal(filing.page, result.seal_id);
    await filing.page.fill('#file-filing', 'BA-2026-0001');
    await submit(filing.page, '#op-file');
    await submit(filing.page, '#op-issue');
    result.issued_status = await filing.page.locator('#seal-status').getAttribute('data-status');
    await shot(filing.page, 'console-seal-zh.png');
    await seal(filing.page, result.seal_id, 'en');
    await shot(filing.page, 'console-seal-en.png');

    await seal(company.page, result.seal_id);
    await company.page.fill('#grantee', cfg.agent_number);
    await company.page.fill('#document-kinds', 'contract');
    await submit(company.page, '#op-grant');
    result.grants = await company.page.locator('#grants tbody tr').count();
  } else {
    const company = await as('company');
    await seal(company.page, cfg.seal_id);
    result.uses = await company.page.locator('#uses tr.use').count();
    await shot(company.page, 'console-owner-seal-zh.png');
    await company.page.selectOption('#suspend-cause', 'loss');
    await company.page.fill('#suspend-reason', '印章介质遗失');
    await submit(company.page, '#op-suspend');
    result.suspended_status = await company.page.locator('#seal-status').getAttribute('data-status');

    const maker = await as('maker');
    await seal(maker.page, cfg.seal_id);
    await maker.page.selectOption('#remake-cause', 'loss');
    await maker.page.fill('#remake-reason', '遗失补制');
    await maker.page.fill('#remake-confirm', cfg.seal_id);
    await submit(maker.page, '#op-remake');
    result.new_seal_id = (await maker.page.locator('#seal-id').textContent()).trim();
    result.new_status = await maker.page.locator('#seal-status').getAttribute('data-status');
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
