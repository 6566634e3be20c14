// Checks a GitHub repository's latest release and installs its firmware asset over
// the air through the OTA updater service. Settings come from .env.defaults and
// .env.local (the token); see README.md.
import * as ds from "@devicescript/core"
import { readSetting } from "@devicescript/settings"
import { OtaClient } from "./otaclient"
import { Updater, status } from "./updater"
import { GithubConfig } from "./github"

const MIN_INTERVAL_S = 1

async function loadConfig(): Promise<GithubConfig> {
    return {
        api: (await readSetting<string>("GITHUB_API", "https://api.github.com")) + "",
        owner: (await readSetting<string>("GITHUB_OWNER", "")) + "",
        repo: (await readSetting<string>("GITHUB_REPO", "")) + "",
        token: (await readSetting<string>("GITHUB_TOKEN", "")) + "",
        assetPattern: (await readSetting<string>("ASSET_PATTERN", "*.bin")) + "",
    }
}

async function main() {
    const cfg = await loadConfig()
    const interval = Math.max(+(await readSetting("CHECK_SECONDS", 3600)), MIN_INTERVAL_S)
    if (!cfg.owner || !cfg.repo) {
        status("error", { error: "settings GITHUB_OWNER and GITHUB_REPO are required" })
        return
    }
    // "int:0" binds to the native server inside this device's runtime.
    const ota = new OtaClient(new ds.OtaUpdater("ota[int:0]"))
    const updater = new Updater(cfg, ota)
    console.log(`ota: watching ${cfg.owner}/${cfg.repo} every ${interval} s`)
    for (;;) {
        try {
            if (await updater.check()) return // rebooting into the new image
        } catch (e) {
            status("error", { error: (e as Error).message })
        }
        await ds.sleep(interval * 1000)
    }
}

await main()
