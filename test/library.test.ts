// The library as a user gets it: `npm pack` of packages/ota, unpacked into a new
// DeviceScript project outside this repository, set up as its README says (the service
// spec copied into services/), and built with the DeviceScript CLI.
import { strict as assert } from "node:assert"
import { execFileSync, spawnSync } from "node:child_process"
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ROOT } from "../sim/program"

const CLI = require.resolve("@devicescript/cli/built/devicescript-cli.cjs")
const PROGRAM = `import * as ds from "@devicescript/core"
import { startOta, isNewer, JsonStream } from "devicescript-github-ota"

const ota = startOta({ owner: "acme", repo: "widget", checkSeconds: 600, writeRate: 30 })
ota.status.subscribe(s => console.log(\`ota: \${s.event}\`))
console.log(\`\${isNewer("v1.2.0", "1.1.9")} \${new JsonStream((path, v) => console.log(path)) !== null}\`)
`

function build(dir: string) {
    return spawnSync(process.execPath, [CLI, "build", "src/main.ts"], { cwd: dir, encoding: "utf8" })
}

describe("library: devicescript-github-ota packed and used by another DeviceScript project", function () {
    this.timeout(120_000)
    const dir = mkdtempSync(join(tmpdir(), "ota-user-"))
    let pkg = ""

    before(() => {
        execFileSync("npm", ["pack", "-w", "devicescript-github-ota", "--pack-destination", dir], { cwd: ROOT, stdio: "pipe" })
        const tgz = readdirSync(dir).find(f => f.endsWith(".tgz"))
        assert.ok(tgz, "npm pack made a tarball")
        pkg = join(dir, "node_modules", "devicescript-github-ota")
        mkdirSync(pkg, { recursive: true })
        execFileSync("tar", ["xzf", join(dir, tgz), "-C", pkg, "--strip-components=1"])
        mkdirSync(join(dir, "src"))
        writeFileSync(join(dir, "src", "main.ts"), PROGRAM)
        writeFileSync(join(dir, "devsconfig.json"), "{}\n")
    })

    after(() => rmSync(dir, { recursive: true, force: true }))

    it("ships its sources, README and the service spec, which is the repository's own", () => {
        for (const f of ["src/index.ts", "src/ota.ts", "README.md", "package.json"]) assert.ok(existsSync(join(pkg, f)), f)
        assert.equal(existsSync(join(pkg, "src", "test")), false, "device tests are not shipped")
        const spec = readFileSync(join(pkg, "services", "otaupdater.md"), "utf8")
        assert.equal(spec, readFileSync(join(ROOT, "services", "otaupdater.md"), "utf8"))
        const meta = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8"))
        assert.deepEqual(meta.devicescript, { library: true })
    })

    it("without the spec in services/, the build fails and names the missing client", () => {
        const r = build(dir)
        assert.notEqual(r.status, 0)
        assert.match(r.stdout + r.stderr, /OtaUpdater/)
    })

    it("with the spec copied into services/ (README step 2), the program builds", () => {
        mkdirSync(join(dir, "services"), { recursive: true })
        copyFileSync(join(pkg, "services", "otaupdater.md"), join(dir, "services", "otaupdater.md"))
        const r = build(dir)
        assert.equal(r.status, 0, r.stdout + r.stderr)
        assert.ok(readFileSync(join(dir, ".devicescript", "bin", "bytecode.devs")).length > 10_000)
    })
})
