// firmware/: partition tables, board definition, main.c patch and build script of the
// OTA-capable DeviceScript ESP32-S3 runtime. The ESP-IDF build itself cannot run here
// (firmware/README.md, "What cannot be checked here").
import * as assert from "node:assert/strict"
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import {
    DEFAULT_PARTITIONS_CSV,
    PARTITION_TABLE_MAX_LEN,
    PARTITION_TABLE_OFFSET,
    PART_SUBTYPE_DATA_OTA,
    PART_SUBTYPE_OTA_0,
    PART_TYPE_APP,
    PART_TYPE_DATA,
    Partition,
    decodePartitionTable,
    encodePartitionTable,
    parsePartitionsCsv,
} from "../sim/partition-table"

const ROOT = path.join(__dirname, "..")
const FW = path.join(ROOT, "firmware")
const BUILD_SH = path.join(FW, "build.sh")
const BOARD_ID = "esp32s3_devkitm_ota"
const BOARD_FILE = path.join(FW, "boards", `${BOARD_ID}.board.json`)
const CLI = path.join(ROOT, "node_modules", "@devicescript", "cli", "built", "devicescript-cli.cjs")
// microsoft/devicescript-esp32, last commit of main (archived): what the patch applies to
const DS_ESP32_SHA = "f6aec45d0a38e76b0019b975f185033e66e2f85d"

const MB = 1024 * 1024
const ALIGN_64K = 0x10000
const TABLES = [
    { file: path.join(FW, "partitions.csv"), flashSize: 4 * MB },
    { file: path.join(FW, "partitions-8MB.csv"), flashSize: 8 * MB },
]
// progstage: the OTA service's program staging area (services/otaupdater.md, "Program updates")
const REQUIRED = ["dcfg", "nvs", "phy_init", "otadata", "ota_0", "ota_1", "fstor", "progstage"]

const readTable = (file: string) => parsePartitionsCsv(fs.readFileSync(file, "utf8"))
const byLabel = (parts: Partition[], label: string) => {
    const p = parts.find(q => q.label === label)
    assert.ok(p, `no partition ${label}`)
    return p
}
const hex = (n: number) => "0x" + n.toString(16)
const board = () => JSON.parse(fs.readFileSync(BOARD_FILE, "utf8"))

describe("firmware partition tables", () => {
    it("firmware/partitions.csv is the simulator's table and the 4 MB one", () => {
        assert.equal(path.resolve(DEFAULT_PARTITIONS_CSV), path.resolve(TABLES[0].file))
    })

    for (const { file, flashSize } of TABLES) {
        describe(path.basename(file), () => {
            it("parses, and encodes to a binary table that reads back the same", () => {
                const parts = readTable(file)
                const bin = encodePartitionTable(parts)
                assert.equal(bin.length, PARTITION_TABLE_MAX_LEN)
                assert.deepEqual(decodePartitionTable(bin), parts)
            })

            it("has exactly dcfg, nvs, phy_init, otadata, ota_0, ota_1, fstor, progstage (the size of fstor)", () => {
                assert.equal(byLabel(readTable(file), "progstage").size, byLabel(readTable(file), "fstor").size)
                const labels = readTable(file).map(p => p.label)
                assert.equal(new Set(labels).size, labels.length, "duplicate labels")
                const allowed = REQUIRED
                for (const l of REQUIRED) assert.ok(labels.includes(l), `${l} missing`)
                for (const l of labels) assert.ok(allowed.includes(l), `unexpected partition ${l}`)
            })

            it("keeps dcfg at 0x9000 and DeviceScript's nvs and phy_init", () => {
                const parts = readTable(file)
                assert.deepEqual(byLabel(parts, "dcfg"), {
                    label: "dcfg", type: 0x8a, subtype: 0x00, offset: 0x9000, size: 0x2000, flags: 0,
                })
                const nvs = byLabel(parts, "nvs")
                assert.deepEqual([nvs.type, nvs.subtype, nvs.offset], [PART_TYPE_DATA, 0x02, 0xb000])
                const phy = byLabel(parts, "phy_init")
                assert.deepEqual([phy.type, phy.subtype, phy.offset], [PART_TYPE_DATA, 0x01, 0xf000])
                const otadata = byLabel(parts, "otadata")
                assert.deepEqual(
                    [otadata.type, otadata.subtype, otadata.size],
                    [PART_TYPE_DATA, PART_SUBTYPE_DATA_OTA, 0x2000]
                )
            })

            it("has fstor with type 0x8A subtype 0x01, 64 KB aligned", () => {
                const fstor = byLabel(readTable(file), "fstor")
                assert.deepEqual([fstor.type, fstor.subtype], [0x8a, 0x01])
                assert.equal(fstor.offset % ALIGN_64K, 0, `fstor at ${hex(fstor.offset)}`)
                assert.equal(fstor.size % 0x1000, 0)
            })

            it("has two equal app slots, 64 KB aligned", () => {
                const parts = readTable(file)
                const apps = parts.filter(p => p.type === PART_TYPE_APP)
                assert.deepEqual(apps.map(p => p.label).sort(), ["ota_0", "ota_1"])
                const [s0, s1] = [byLabel(parts, "ota_0"), byLabel(parts, "ota_1")]
                assert.deepEqual([s0.subtype, s1.subtype], [PART_SUBTYPE_OTA_0, PART_SUBTYPE_OTA_0 + 1])
                assert.equal(s0.size, s1.size)
                for (const s of [s0, s1]) {
                    assert.equal(s.offset % ALIGN_64K, 0, `${s.label} at ${hex(s.offset)}`)
                    assert.equal(s.size % ALIGN_64K, 0, `${s.label} size ${hex(s.size)}`)
                }
            })

            it(`does not overlap and fits ${flashSize / MB} MB`, () => {
                const sorted = [...readTable(file)].sort((a, b) => a.offset - b.offset)
                assert.ok(sorted[0].offset >= PARTITION_TABLE_OFFSET + 0x1000, "overlaps the table at 0x8000")
                sorted.forEach((p, i) => {
                    if (i > 0) {
                        const prev = sorted[i - 1]
                        assert.ok(p.offset >= prev.offset + prev.size, `${p.label} overlaps ${prev.label}`)
                    }
                    assert.ok(p.offset + p.size <= flashSize, `${p.label} ends at ${hex(p.offset + p.size)}`)
                })
            })
        })
    }

    it("both tables keep dcfg, nvs, phy_init and fstor in the same place; 8 MB slots are bigger", () => {
        const [t4, t8] = TABLES.map(t => readTable(t.file))
        for (const l of ["dcfg", "nvs", "phy_init", "fstor"]) assert.deepEqual(byLabel(t8, l), byLabel(t4, l), l)
        assert.ok(byLabel(t8, "ota_0").size > byLabel(t4, "ota_0").size)
    })
})

describe("firmware board definition", () => {
    it("is an esp32s3 board with its own id and product id", () => {
        const b = board()
        assert.equal(b.id, BOARD_ID)
        assert.equal(b.archId, "esp32s3")
        assert.equal((Number(b.productId) & 0xf0000000) >>> 0, 0x30000000, "product ids start with 0x3")
        assert.notEqual(Number(b.productId), 0x3574d277, "the stock esp32s3_devkit_m product id")
        assert.ok(b.devName)
    })

    it("has the fstor offset and size of both partition tables", () => {
        const b = board()
        for (const { file } of TABLES) {
            const fstor = byLabel(readTable(file), "fstor")
            assert.equal(Number(b.fstorOffset), fstor.offset, path.basename(file))
            assert.equal(b.fstorPages * 4096, fstor.size, path.basename(file))
        }
    })

    it("is accepted by the pinned devicescript CLI (boards/*.board.json of the current directory)", () => {
        const r = spawnSync(process.execPath, [CLI, "flash", "esp32", "--help"], { cwd: FW, encoding: "utf8" })
        assert.equal(r.status, 0, r.stderr)
        const out = r.stdout + r.stderr
        assert.ok(!/\.board\.json\(\d+\)/.test(out), out) // how the CLI reports an invalid board file
        assert.match(out, new RegExp(`--board ${BOARD_ID}\\b`))
    })
})

describe("firmware main.c patch", () => {
    const patchFile = path.join(FW, "main-register-otaupdater.patch")
    const text = () => fs.readFileSync(patchFile, "utf8")
    const diffLines = () => text().slice(text().indexOf("diff --git ")).split("\n")

    it("changes only main/main.c and only adds the otaupdater_init declaration and call", () => {
        const lines = diffLines()
        assert.deepEqual(
            lines.filter(l => l.startsWith("diff --git ")),
            ["diff --git a/main/main.c b/main/main.c"]
        )
        const removed = lines.filter(l => l.startsWith("-") && !l.startsWith("--- "))
        assert.deepEqual(removed, [])
        const added = lines.filter(l => l.startsWith("+") && !l.startsWith("+++ ")).map(l => l.slice(1))
        const code = added.filter(l => l.trim() !== "")
        assert.deepEqual(code.map(l => l.trim()), ["void otaupdater_init(void);", "otaupdater_init();"])
    })

    it("calls otaupdater_init() inside app_init_services(), after devs_service_full_init()", () => {
        const lines = diffLines()
        const call = lines.indexOf("+    otaupdater_init();")
        assert.ok(call > 0)
        assert.equal(lines[call - 1], "     devs_service_full_init();")
        assert.equal(lines[call - 2], " void app_init_services(void) {")
    })

    it("applies with git apply to devicescript-esp32 at the pinned commit (needs DEVICESCRIPT_ESP32_GIT)", function () {
        // DEVICESCRIPT_ESP32_GIT: a git directory (clone or mirror) of microsoft/devicescript-esp32
        const gitDir = process.env.DEVICESCRIPT_ESP32_GIT
        if (!gitDir) this.skip()
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dsesp32-"))
        try {
            const tar = execFileSync("git", ["--git-dir", gitDir!, "archive", DS_ESP32_SHA, "main/main.c"])
            execFileSync("tar", ["-x", "-C", tmp], { input: tar })
            execFileSync("git", ["apply", "--check", patchFile], { cwd: tmp })
        } finally {
            fs.rmSync(tmp, { recursive: true, force: true })
        }
    })
})

describe("firmware build script", () => {
    const run = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
        spawnSync("bash", [BUILD_SH, ...args], { encoding: "utf8", env })

    it("passes bash -n", () => {
        const r = spawnSync("bash", ["-n", BUILD_SH], { encoding: "utf8" })
        assert.equal(r.status, 0, r.stderr)
    })

    it("--help exits 0 without ESP-IDF and names the pinned commit", () => {
        const r = run(["--help"], { PATH: "/usr/bin:/bin" })
        assert.equal(r.status, 0, r.stderr)
        assert.match(r.stdout, /--flash 4MB\|8MB/)
        assert.match(r.stdout, /--signed KEY\.pem/)
        assert.match(r.stdout, /^  --signed-apps  /m)
        assert.ok(r.stdout.includes(DS_ESP32_SHA))
    })

    it("stops with a clear error when ESP-IDF is missing", () => {
        const r = run(["--version", "v1.0.0"], { PATH: "/usr/bin:/bin" })
        assert.equal(r.status, 1)
        assert.match(r.stderr, /ESP-IDF not found: IDF_PATH is not set/)
    })

    it("refuses a bad --flash or --version", () => {
        assert.equal(run(["--version", "v1.0.0", "--flash", "16MB", "--print-config"]).status, 1)
        assert.equal(run(["--version", "1.0", "--print-config"]).status, 1)
        assert.equal(run(["--print-config"]).status, 1)
    })

    it("--print-config: table, flash size and app version per option; signing only with --signed", () => {
        const r8 = run(["--flash", "8MB", "--version", "v1.2.3", "--print-config"])
        assert.equal(r8.status, 0, r8.stderr)
        assert.match(r8.stdout, /^CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y$/m)
        assert.match(r8.stdout, /^CONFIG_ESPTOOLPY_FLASHSIZE_8MB=y$/m)
        assert.match(r8.stdout, /partitions-8MB\.csv/)
        assert.match(r8.stdout, /^CONFIG_APP_PROJECT_VER_FROM_CONFIG=y$/m)
        assert.match(r8.stdout, /^CONFIG_APP_PROJECT_VER="1\.2\.3"$/m)
        assert.doesNotMatch(r8.stdout, /^CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT=y$/m)

        const r4 = run(["--version", "v2.0.0-rc.1", "--print-config"])
        assert.equal(r4.status, 0, r4.stderr)
        assert.match(r4.stdout, /^CONFIG_ESPTOOLPY_FLASHSIZE_4MB=y$/m)
        assert.match(r4.stdout, /firmware\/partitions\.csv/)
        assert.match(r4.stdout, /^CONFIG_APP_PROJECT_VER="2\.0\.0-rc\.1"$/m)

        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "fwkey-"))
        try {
            const key = path.join(tmp, "key.pem")
            fs.writeFileSync(key, "-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n")
            const rs = run(["--version", "v1.0.0", "--signed", key, "--print-config"])
            assert.equal(rs.status, 0, rs.stderr)
            for (const opt of [
                "SECURE_SIGNED_APPS_NO_SECURE_BOOT",
                "SECURE_SIGNED_APPS_RSA_SCHEME",
                "SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT",
                "SECURE_BOOT_BUILD_SIGNED_BINARIES",
            ])
                assert.match(rs.stdout, new RegExp(`^CONFIG_${opt}=y$`, "m"))
            assert.ok(rs.stdout.includes(`CONFIG_SECURE_BOOT_SIGNING_KEY="${key}"`))
            assert.notEqual(run(["--version", "v1.0.0", "--signed", path.join(tmp, "none.pem")]).status, 0)
        } finally {
            fs.rmSync(tmp, { recursive: true, force: true })
        }
    })

    it("--signed-apps: the sdkconfig.signed overlay with CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES=n, no key; not with --signed", () => {
        const r = run(["--version", "v1.0.0", "--signed-apps", "--print-config"])
        assert.equal(r.status, 0, r.stderr)
        const at = r.stdout.indexOf("# ---- generated")
        const [signed, generated] = [r.stdout.slice(0, at), r.stdout.slice(at)]
        assert.ok(signed.includes("# ---- firmware/sdkconfig.signed\n" + fs.readFileSync(path.join(FW, "sdkconfig.signed"), "utf8")), "sdkconfig.signed as it is")
        for (const opt of ["SECURE_SIGNED_APPS_NO_SECURE_BOOT", "SECURE_SIGNED_APPS_RSA_SCHEME", "SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT"])
            assert.match(signed, new RegExp(`^CONFIG_${opt}=y$`, "m"))
        // the generated overlay comes last, so its value wins over sdkconfig.signed's "=y";
        // CONFIG_SECURE_BOOT_SIGNING_KEY depends on it and drops out with it
        assert.match(generated, /^# generated by firmware\/build\.sh --flash 4MB --version v1\.0\.0 --signed-apps$/m)
        assert.match(generated, /^# CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES is not set$/m)
        assert.doesNotMatch(generated, /^CONFIG_SECURE_/m)
        assert.match(generated, /^CONFIG_APP_PROJECT_VER="1\.0\.0"$/m)

        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "fwkey-"))
        try {
            const key = path.join(tmp, "key.pem")
            fs.writeFileSync(key, "-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n")
            const both = run(["--version", "v1.0.0", "--signed", key, "--signed-apps", "--print-config"])
            assert.equal(both.status, 1)
            assert.match(both.stderr, /--signed KEY\.pem and --signed-apps: give one/)
        } finally {
            fs.rmSync(tmp, { recursive: true, force: true })
        }
        // the build checks the sdkconfig it got: signatures verified, nothing signed, no key
        const buildSh = fs.readFileSync(BUILD_SH, "utf8")
        assert.ok(buildSh.includes(`"^# CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES is not set" "$SRC/sdkconfig"`))
        assert.ok(buildSh.includes(`"^CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT=y" "$SRC/sdkconfig"`))
    })

    it("sdkconfig.defaults names the table file build.sh writes and leaves signing to sdkconfig.signed", () => {
        const defaults = fs.readFileSync(path.join(FW, "sdkconfig.defaults"), "utf8")
        assert.match(defaults, /^CONFIG_PARTITION_TABLE_CUSTOM=y$/m)
        assert.match(defaults, /^CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions-ota\.csv"$/m)
        assert.ok(fs.readFileSync(BUILD_SH, "utf8").includes(`"$SRC/partitions-ota.csv"`))
        assert.doesNotMatch(defaults, /^CONFIG_SECURE_/m)
        const signed = fs.readFileSync(path.join(FW, "sdkconfig.signed"), "utf8")
        assert.match(signed, /^CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT=y$/m)
        assert.match(signed, /^# CONFIG_SECURE_BOOT is not set$/m)
    })
})
