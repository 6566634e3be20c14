// Host fake of devicescript runtime/devicescript/devicescript.h (@c4e2186, the commit
// devicescript-esp32 pins): the program-store and verification prototypes, exact.
// Behaviour in src/fake_devs.c (devsmgr.c's size rules, a store in the fstor partition).
#pragma once
#include "jd_protocol.h"

#define JD_SHA256_HASH_BYTES 32

int devs_verify(const uint8_t *img, uint32_t size);
int devsmgr_deploy_start(uint32_t sz);
int devsmgr_deploy_write(const void *buf, unsigned size);
