#!/usr/bin/env bash
# Builds the DeviceScript ESP32-S3 runtime with the OTA updater service (native/otaupdater)
# and the two-slot partition table of this folder. See firmware/README.md.
#
# What it does: clones microsoft/devicescript-esp32 at a pinned commit (with the submodules
# it needs), applies main-register-otaupdater.patch, prepares the files its Makefile would
# prepare (sdkconfig.defaults, build/options.cmake, build/version.c, main/idf_component.yml),
# adds the overlays of this folder, runs idf.py for esp32s3 with native/otaupdater as an
# extra component, and copies the app image, bootloader, partition table, otadata and a
# combined image (with the board's DeviceScript config at 0x9000) to the output folder.
set -euo pipefail

# microsoft/devicescript-esp32: last commit of main (the repository is archived).
DS_ESP32_SHA=f6aec45d0a38e76b0019b975f185033e66e2f85d
# Its devicescript submodule at that commit (release v2.16.0, bytecode 2.16: programs
# compiled by the pinned @devicescript/cli 2.16.4 run on it).
DS_SUBMODULE_SHA=c4e21867c53925030ef9c8f5d11b5fd400577b97
DS_ESP32_REPO=${DS_ESP32_REPO:-https://github.com/microsoft/devicescript-esp32}
# ESP-IDF that devicescript-esp32's CI builds with (.github/workflows/build.yml).
IDF_WANTED=5.0.5
TARGET=esp32s3

FW_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$FW_DIR/.." && pwd)

usage() {
    cat <<EOF
Usage: firmware/build.sh --version vX.Y.Z [--flash 4MB|8MB] [--signed KEY.pem | --signed-apps] [options]

Builds the DeviceScript runtime for ESP32-S3 with the OTA updater service, pinned to
microsoft/devicescript-esp32 $DS_ESP32_SHA, with ESP-IDF v$IDF_WANTED.

  --version vX.Y.Z    firmware version (semver): the app descriptor version that the OTA
                      updater reports as running_version (stored without the "v"), and
                      the DeviceScript firmware version (with the "v"). Required.
  --flash 4MB|8MB     flash size and partition table: 4MB uses firmware/partitions.csv,
                      8MB firmware/partitions-8MB.csv (default: 4MB)
  --signed KEY.pem    build signed app images (firmware/sdkconfig.signed: RSA-3072 signature
                      block, verified by esp_ota on update, no hardware secure boot).
                      Make a key with: espsecure.py generate_signing_key --version 2 --scheme rsa3072 KEY.pem
  --signed-apps       the same firmware as --signed (sdkconfig.signed: it verifies the signature
                      of every update with the key of the running app) but built WITHOUT a key:
                      CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES=n, so the app image is unsigned and
                      must be signed afterwards, before it is flashed or published:
                      npm run release:pack -- ... --sign-key KEY.pem, or
                      espsecure.py sign_data --version 2 --keyfile KEY.pem --output SIGNED.bin APP.bin
                      (what the release workflow does: the build never sees the key). Not with --signed.
  --board ID          DeviceScript board config written at 0x9000 of the combined image
                      (firmware/boards/ID.board.json; default: esp32s3_devkitm_ota)
  --component DIR     the OTA updater ESP-IDF component (default: native/otaupdater)
  --work DIR          where devicescript-esp32 is cloned and built (default: firmware/build)
  --out DIR           output folder (default: firmware/dist/<flash>)
  --clean             delete the build folder and managed components of the clone first
  --allow-idf-version build with another ESP-IDF than v$IDF_WANTED (a warning instead of an error)
  --print-config      print the sdkconfig overlay this build would use and exit (no ESP-IDF needed)
  -h, --help          this help

Environment: IDF_PATH and idf.py on PATH (run ". \$IDF_PATH/export.sh" first);
DS_ESP32_REPO overrides the clone URL (e.g. a local mirror). The first build needs the
network: git submodules and the esp_tinyusb managed component.

Output (in --out): <name>-vX.Y.Z-esp32s3.bin (the app image, the release asset for OTA),
bootloader.bin, partition-table.bin, ota_data_initial.bin, flash_args, espjd.elf,
sdkconfig and devicescript-esp32s3-<board>-0x0.bin (everything from 0x0 to the end of
the app, with the board config at 0x9000; without node, combined-nodcfg-0x0.bin, the same
without board config, is kept instead; flash it once
with esptool at 0x0 or: npx devicescript flash esp32 --board <board> --file <it>).
EOF
}

die() {
    echo "build.sh: error: $*" >&2
    exit 1
}
log() { echo "build.sh: $*" >&2; }

FLASH=4MB
VERSION=""
SIGN_KEY=""
SIGNED_APPS=0
BOARD=esp32s3_devkitm_ota
COMPONENT_DIR="$REPO_DIR/native/otaupdater"
WORK_DIR="$FW_DIR/build"
OUT_DIR=""
CLEAN=0
ALLOW_IDF=0
PRINT_CONFIG=0

need_arg() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    --flash) need_arg "$@"; FLASH=$2; shift 2 ;;
    --version) need_arg "$@"; VERSION=$2; shift 2 ;;
    --signed) need_arg "$@"; SIGN_KEY=$2; shift 2 ;;
    --signed-apps) SIGNED_APPS=1; shift ;;
    --board) need_arg "$@"; BOARD=$2; shift 2 ;;
    --component) need_arg "$@"; COMPONENT_DIR=$2; shift 2 ;;
    --work) need_arg "$@"; WORK_DIR=$2; shift 2 ;;
    --out) need_arg "$@"; OUT_DIR=$2; shift 2 ;;
    --clean) CLEAN=1; shift ;;
    --allow-idf-version) ALLOW_IDF=1; shift ;;
    --print-config) PRINT_CONFIG=1; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

case "$FLASH" in
4MB | 4M | 4mb) FLASH=4MB; PARTITIONS_CSV="$FW_DIR/partitions.csv" ;;
8MB | 8M | 8mb) FLASH=8MB; PARTITIONS_CSV="$FW_DIR/partitions-8MB.csv" ;;
*) die "--flash must be 4MB or 8MB, not '$FLASH'" ;;
esac

[[ -n "$VERSION" ]] || die "--version vX.Y.Z is required (see --help)"
# semver 2.0 core, optional prerelease/build; at most 31 characters (esp_app_desc_t.version is char[32])
SEMVER_RE='^[vV]?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
[[ "$VERSION" =~ $SEMVER_RE ]] || die "--version '$VERSION' is not a semver like v1.2.3"
APP_VERSION=${VERSION#[vV]}
[[ ${#APP_VERSION} -le 31 ]] || die "--version '$VERSION' is longer than the 31 characters of esp_app_desc_t.version"

BOARD_JSON="$FW_DIR/boards/$BOARD.board.json"
[[ -f "$BOARD_JSON" ]] || die "no board definition $BOARD_JSON"

if [[ -n "$SIGN_KEY" && $SIGNED_APPS == 1 ]]; then
    die "--signed KEY.pem and --signed-apps: give one (--signed signs at build time, --signed-apps leaves the app unsigned)"
fi
if [[ -n "$SIGN_KEY" ]]; then
    [[ -f "$SIGN_KEY" && -r "$SIGN_KEY" ]] || die "--signed: cannot read key file '$SIGN_KEY'"
    grep -q "PRIVATE KEY" "$SIGN_KEY" || die "--signed: '$SIGN_KEY' is not a PEM private key"
    SIGN_KEY=$(cd "$(dirname "$SIGN_KEY")" && pwd)/$(basename "$SIGN_KEY")
    [[ "$SIGN_KEY" != *'"'* ]] || die "--signed: key path must not contain a double quote"
fi

# sdkconfig.signed is applied with --signed and with --signed-apps
SIGNED_OVERLAY=0
if [[ -n "$SIGN_KEY" || $SIGNED_APPS == 1 ]]; then SIGNED_OVERLAY=1; fi
SIGN_FLAG=""
if [[ -n "$SIGN_KEY" ]]; then SIGN_FLAG=" --signed"; elif [[ $SIGNED_APPS == 1 ]]; then SIGN_FLAG=" --signed-apps"; fi

# The overlay generated for this build (flash size, partition table, version, signing key).
# It is applied after the upstream defaults, firmware/sdkconfig.defaults and, with
# --signed or --signed-apps, firmware/sdkconfig.signed: its lines win.
build_overlay() {
    echo "# generated by firmware/build.sh --flash $FLASH --version $VERSION$SIGN_FLAG"
    echo "CONFIG_IDF_TARGET=\"$TARGET\""
    if [[ $FLASH == 8MB ]]; then
        echo "# CONFIG_ESPTOOLPY_FLASHSIZE_4MB is not set"
        echo "CONFIG_ESPTOOLPY_FLASHSIZE_8MB=y"
    else
        echo "CONFIG_ESPTOOLPY_FLASHSIZE_4MB=y"
        echo "# CONFIG_ESPTOOLPY_FLASHSIZE_8MB is not set"
    fi
    echo "CONFIG_PARTITION_TABLE_CUSTOM=y"
    echo "CONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\"partitions-ota.csv\""
    echo "# partition table source: firmware/$(basename "$PARTITIONS_CSV")"
    echo "CONFIG_APP_PROJECT_VER_FROM_CONFIG=y"
    echo "CONFIG_APP_PROJECT_VER=\"$APP_VERSION\""
    if [[ -n "$SIGN_KEY" ]]; then
        echo "CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES=y"
        echo "CONFIG_SECURE_BOOT_SIGNING_KEY=\"$SIGN_KEY\""
    elif [[ $SIGNED_APPS == 1 ]]; then
        # verify signed updates (sdkconfig.signed) without signing at build time: no key needed.
        # CONFIG_SECURE_BOOT_SIGNING_KEY depends on this option, so it drops out; the RSA (Secure
        # Boot V2) scheme needs no CONFIG_SECURE_BOOT_VERIFICATION_KEY (only the ECDSA V1 scheme
        # does): the app trusts the key in its own signature block.
        echo "# CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES is not set"
    fi
}

if [[ $PRINT_CONFIG == 1 ]]; then
    echo "# ---- firmware/sdkconfig.defaults"
    cat "$FW_DIR/sdkconfig.defaults"
    if [[ $SIGNED_OVERLAY == 1 ]]; then
        echo "# ---- firmware/sdkconfig.signed"
        cat "$FW_DIR/sdkconfig.signed"
    fi
    echo "# ---- generated"
    build_overlay
    exit 0
fi

# ---- tools
command -v git >/dev/null || die "git not found"
if [[ -z "${IDF_PATH:-}" ]] || ! command -v idf.py >/dev/null; then
    if [[ -z "${IDF_PATH:-}" ]]; then why="IDF_PATH is not set"; else why="IDF_PATH is $IDF_PATH but idf.py is not on PATH"; fi
    die "ESP-IDF not found: $why.
  Install ESP-IDF v$IDF_WANTED (https://docs.espressif.com/projects/esp-idf/en/v$IDF_WANTED/esp32s3/get-started/)
  and run '. \$IDF_PATH/export.sh' in this shell, then run this script again."
fi
VERSION_CMAKE="$IDF_PATH/tools/cmake/version.cmake"
[[ -f "$VERSION_CMAKE" ]] || die "$VERSION_CMAKE not found: is IDF_PATH ($IDF_PATH) an ESP-IDF checkout?"
idf_ver_part() { sed -n "s/^ *set(IDF_VERSION_$1 \\([0-9]*\\)).*/\\1/p" "$VERSION_CMAKE" | head -1; }
IDF_FOUND="$(idf_ver_part MAJOR).$(idf_ver_part MINOR).$(idf_ver_part PATCH)"
if [[ "$IDF_FOUND" != "$IDF_WANTED" ]]; then
    msg="ESP-IDF v$IDF_FOUND at $IDF_PATH, but devicescript-esp32 $DS_ESP32_SHA builds with v$IDF_WANTED"
    if [[ $ALLOW_IDF == 1 ]]; then
        log "warning: $msg (--allow-idf-version given)"
    else
        die "$msg. Install v$IDF_WANTED or pass --allow-idf-version to try anyway."
    fi
fi
if command -v esptool.py >/dev/null; then
    ESPTOOL=(esptool.py)
elif [[ -f "$IDF_PATH/components/esptool_py/esptool/esptool.py" ]]; then
    ESPTOOL=(python "$IDF_PATH/components/esptool_py/esptool/esptool.py")
else
    die "esptool.py not found (it comes with '. \$IDF_PATH/export.sh')"
fi
[[ -f "$COMPONENT_DIR/CMakeLists.txt" ]] ||
    die "OTA updater component not found: $COMPONENT_DIR/CMakeLists.txt (see --component)"
COMPONENT_DIR=$(cd "$COMPONENT_DIR" && pwd)
[[ "$COMPONENT_DIR" != *[\;\ ]* ]] || die "component path must not contain spaces or ';': $COMPONENT_DIR"

SRC="$WORK_DIR/devicescript-esp32"
OUT_DIR=${OUT_DIR:-"$FW_DIR/dist/$FLASH"}
mkdir -p "$WORK_DIR" "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

# ---- sources at the pinned commit
if [[ ! -d "$SRC/.git" ]]; then
    log "cloning $DS_ESP32_REPO into $SRC"
    git clone "$DS_ESP32_REPO" "$SRC"
fi
if ! git -C "$SRC" cat-file -e "$DS_ESP32_SHA^{commit}" 2>/dev/null; then
    git -C "$SRC" fetch origin
fi
# undo a previous build's patch and generated files, then check out the pinned commit
git -C "$SRC" checkout -q -- . 2>/dev/null || true
git -C "$SRC" checkout -q --detach "$DS_ESP32_SHA"
[[ "$(git -C "$SRC" rev-parse HEAD)" == "$DS_ESP32_SHA" ]] || die "could not check out $DS_ESP32_SHA in $SRC"

# submodules: devicescript, and in it what the runtime build uses (not jacdac-ts)
git -C "$SRC" submodule update --init devicescript
DS="$SRC/devicescript"
[[ "$(git -C "$DS" rev-parse HEAD)" == "$DS_SUBMODULE_SHA" ]] ||
    die "devicescript submodule is at $(git -C "$DS" rev-parse HEAD), expected $DS_SUBMODULE_SHA"
git -C "$DS" submodule update --init runtime/jacdac-c runtime/devicescript/sha-2 runtime/devicescript/network/tiny-AES-c
git -C "$DS/runtime/jacdac-c" submodule update --init --recursive
[[ -f "$DS/runtime/jacdac-c/jacdac/dist/c/jd_spec_pack.c" ]] || die "jacdac-c submodules incomplete in $DS/runtime/jacdac-c"

# ---- patch: register the OTA updater service in app_init_services()
git -C "$SRC" apply --check "$FW_DIR/main-register-otaupdater.patch" ||
    die "main-register-otaupdater.patch does not apply to $SRC"
git -C "$SRC" apply "$FW_DIR/main-register-otaupdater.patch"
log "applied main-register-otaupdater.patch"

# ---- what devicescript-esp32's Makefile prepares (targets sdkconfig.defaults, refresh-version)
cat "$SRC/boards/$TARGET/sdkconfig.$TARGET" "$SRC/boards/sdkconfig.common" >"$SRC/sdkconfig.defaults"
cp "$SRC/boards/$TARGET/idf_component.yml" "$SRC/main/idf_component.yml"
if [[ $CLEAN == 1 ]]; then
    log "removing $SRC/build"
    rm -rf "$SRC/build" "$SRC/managed_components" "$SRC/dependencies.lock"
fi
mkdir -p "$SRC/build"
echo 'idf_build_set_property(COMPILE_OPTIONS "" APPEND)' >"$SRC/build/options.cmake"
echo "const char app_fw_version[] = \"v$APP_VERSION\";" >"$SRC/build/version.c"

# ---- our partition table and sdkconfig overlays
cp "$PARTITIONS_CSV" "$SRC/partitions-ota.csv"
cp "$FW_DIR/sdkconfig.defaults" "$SRC/sdkconfig.ota"
DEFAULTS="sdkconfig.defaults;sdkconfig.ota"
if [[ $SIGNED_OVERLAY == 1 ]]; then
    cp "$FW_DIR/sdkconfig.signed" "$SRC/sdkconfig.signed"
    DEFAULTS="$DEFAULTS;sdkconfig.signed"
fi
build_overlay >"$SRC/sdkconfig.build"
DEFAULTS="$DEFAULTS;sdkconfig.build"
# a fresh sdkconfig from the defaults every time (flash size, version or signing may differ)
rm -f "$SRC/sdkconfig"

# ---- build
export IDF_TARGET=$TARGET
log "idf.py build (flash $FLASH, version $APP_VERSION${SIGN_KEY:+, signed}$([[ $SIGNED_APPS == 0 ]] || echo ", verifies signed updates, app left unsigned"))"
(
    cd "$SRC"
    idf.py -D "SDKCONFIG_DEFAULTS=$DEFAULTS" -D "EXTRA_COMPONENT_DIRS=$COMPONENT_DIR" build
)

B="$SRC/build"
grep -q "^CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y" "$SRC/sdkconfig" || die "sdkconfig: app rollback is not enabled"
grep -q "^CONFIG_ESPTOOLPY_FLASHSIZE=\"$FLASH\"" "$SRC/sdkconfig" || die "sdkconfig: flash size is not $FLASH"
grep -q "^CONFIG_APP_PROJECT_VER=\"$APP_VERSION\"" "$SRC/sdkconfig" || die "sdkconfig: app version is not $APP_VERSION"
if [[ $SIGNED_OVERLAY == 1 ]]; then
    grep -q "^CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT=y" "$SRC/sdkconfig" || die "sdkconfig: signed updates not enabled"
    grep -q "^CONFIG_SECURE_SIGNED_APPS_RSA_SCHEME=y" "$SRC/sdkconfig" || die "sdkconfig: the app signing scheme is not RSA (Secure Boot V2)"
fi
if [[ $SIGNED_APPS == 1 ]]; then
    grep -q "^# CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES is not set" "$SRC/sdkconfig" ||
        die "sdkconfig: --signed-apps, but the build signs its binaries"
    ! grep -q "^CONFIG_SECURE_BOOT_SIGNING_KEY=" "$SRC/sdkconfig" || die "sdkconfig: --signed-apps, but a signing key is configured"
fi
for f in espjd.bin espjd.elf bootloader/bootloader.bin partition_table/partition-table.bin ota_data_initial.bin flash_args; do
    [[ -f "$B/$f" ]] || die "build output $B/$f missing"
done

# ---- outputs
# ESP-IDF's build/flash_args: a line of flash settings, then "OFFSET FILE" lines
read -r -a FLASH_SETTINGS < <(head -n 1 "$B/flash_args")
offset_of() { awk -v f="$1" 'NR > 1 && $2 == f { print $1 }' "$B/flash_args"; }
BL_OFF=$(offset_of bootloader/bootloader.bin)
PT_OFF=$(offset_of partition_table/partition-table.bin)
APP_OFF=$(offset_of espjd.bin)
OTADATA_OFF=$(offset_of ota_data_initial.bin)
[[ -n "$BL_OFF" && -n "$PT_OFF" && -n "$APP_OFF" && -n "$OTADATA_OFF" ]] ||
    die "unexpected $B/flash_args: $(tr '\n' ' ' <"$B/flash_args")"
FSTOR_OFF=$(awk -F, '!/^ *#/ && $1 ~ /^ *fstor *$/ { gsub(/ /, "", $4); print $4 }' "$SRC/partitions-ota.csv")
[[ -n "$FSTOR_OFF" ]] || die "no fstor in the partition table"

APP_NAME="devicescript-ota-v$APP_VERSION-$TARGET.bin"
cp "$B/espjd.bin" "$OUT_DIR/$APP_NAME"
cp "$B/espjd.elf" "$OUT_DIR/espjd.elf"
cp "$B/bootloader/bootloader.bin" "$OUT_DIR/bootloader.bin"
cp "$B/partition_table/partition-table.bin" "$OUT_DIR/partition-table.bin"
cp "$B/ota_data_initial.bin" "$OUT_DIR/ota_data_initial.bin"
cp "$SRC/sdkconfig" "$OUT_DIR/sdkconfig"

# One image from 0x0 (for `devs flash --file`, web flashers): bootloader, partition table,
# board config at 0x9000 (below), the app in ota_0, and otadata when it lies below the app.
# merge_bin fills gaps with 0xFF, so everything between 0x0 and the end of the app is
# rewritten: with the 4 MB table that ends before fstor (the deployed program stays) but
# otadata (0x3b0000) is not in it; with the 8 MB table the app is at 0x200000, above fstor,
# so this image erases the program store too.
MERGE=("$BL_OFF" bootloader/bootloader.bin "$PT_OFF" partition_table/partition-table.bin "$APP_OFF" espjd.bin)
if ((OTADATA_OFF < APP_OFF)); then MERGE+=("$OTADATA_OFF" ota_data_initial.bin); fi
COMBINED="$OUT_DIR/combined-nodcfg-0x0.bin"
(cd "$B" && "${ESPTOOL[@]}" --chip "$TARGET" merge_bin -o "$COMBINED" "${FLASH_SETTINGS[@]}" "${MERGE[@]}")

# DeviceScript board config (dcfg) at 0x9000, with the pinned devicescript CLI's binpatch
CLI="$REPO_DIR/node_modules/@devicescript/cli/built/devicescript-cli.cjs"
BOARD_IMAGE="$OUT_DIR/devicescript-$TARGET-$BOARD-0x0.bin"
DCFG_LINE=""
if command -v node >/dev/null && [[ -f "$CLI" ]]; then
    # binpatch reads arch.json next to the board file
    cp "$BOARD_JSON" "$SRC/boards/$TARGET/$BOARD.board.json"
    (cd "$SRC" && node "$CLI" binpatch --bin "$COMBINED" --elf "$B/espjd.elf" \
        -o "$OUT_DIR" "boards/$TARGET/$BOARD.board.json")
    rm -f "$OUT_DIR/devicescript-$TARGET-generic-"* "$OUT_DIR/devicescript-$TARGET-generic.elf" "$COMBINED"
    [[ -f "$BOARD_IMAGE" ]] || die "binpatch did not write $BOARD_IMAGE"
    # the dcfg partition (0x9000, 8K) on its own, for flashing piece by piece
    dd if="$BOARD_IMAGE" of="$OUT_DIR/dcfg.bin" bs=4096 skip=9 count=2 status=none
    [[ "$(head -c 4 "$OUT_DIR/dcfg.bin")" == "DCFG" ]] || die "no DCFG at 0x9000 of $BOARD_IMAGE"
    DCFG_LINE="0x9000 dcfg.bin"
else
    log "warning: node or $CLI missing (run npm ci): no board config;"
    log "         $COMBINED and flash_args have nothing at 0x9000 (pins, LED, log pin)"
    BOARD_IMAGE=$COMBINED
fi

# esptool argument file for the first flash over serial, piece by piece: bootloader,
# partition table, board config, blank otadata (boot ota_0) and the app. It writes nothing
# over nvs, phy_init, fstor or ota_1.
{
    echo "${FLASH_SETTINGS[*]}"
    echo "$BL_OFF bootloader.bin"
    echo "$PT_OFF partition-table.bin"
    [[ -z "$DCFG_LINE" ]] || echo "$DCFG_LINE"
    echo "$OTADATA_OFF ota_data_initial.bin"
    echo "$APP_OFF $APP_NAME"
} >"$OUT_DIR/flash_args"

log "done: $OUT_DIR"
ls -l "$OUT_DIR" >&2
cat >&2 <<EOM

Partition table firmware/$(basename "$PARTITIONS_CSV"): app ota_0 at $APP_OFF, otadata at $OTADATA_OFF, fstor at $FSTOR_OFF.
Flash once over serial (keeps nvs and the deployed program in fstor):
  (cd $OUT_DIR && esptool.py --chip $TARGET -p PORT write_flash @flash_args)
or as one image from 0x0 (see firmware/README.md for what it overwrites):
  esptool.py --chip $TARGET -p PORT write_flash 0x0 $BOARD_IMAGE
Release asset for OTA updates: $OUT_DIR/$APP_NAME
Check it: esptool.py --chip $TARGET image_info --version 2 $OUT_DIR/$APP_NAME
EOM
if [[ $SIGNED_APPS == 1 ]]; then
    cat >&2 <<EOM

--signed-apps: this firmware installs only updates signed with the key of the running app,
and $APP_NAME (also inside flash_args and the 0x0 image) is NOT signed yet.
Sign it before flashing or publishing, e.g.
  espsecure.py sign_data --version 2 --keyfile KEY.pem --output SIGNED.bin $OUT_DIR/$APP_NAME
or npm run release:pack -- --version v$APP_VERSION --firmware $OUT_DIR/$APP_NAME --out dist --sign-key KEY.pem
then flash the signed app at $APP_OFF after the pieces of flash_args (an unsigned running app
cannot install any update).
EOM
fi
