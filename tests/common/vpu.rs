// SPDX-License-Identifier: MPL-2.0
//! A VPU of the tests' own: a session listing the MPP doubles write and a
//! lock directory for the guards, in a private directory.

use super::fake_mpp;
use std::path::PathBuf;

pub struct Vpu {
    pub dir: PathBuf,
    pub session_file: PathBuf,
}

impl Vpu {
    /// A fresh directory whose listing holds `listing`.
    pub fn new(name: &str, listing: &str) -> Self {
        let vpu = Vpu::at(super::temp_dir(name));
        std::fs::write(&vpu.session_file, listing).unwrap();
        vpu
    }

    /// The VPU another process created in `dir`.
    pub fn at(dir: PathBuf) -> Self {
        let session_file = dir.join("sessions-summary");
        Vpu { dir, session_file }
    }

    pub fn lock_dir(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// Sessions listed now.
    pub fn sessions(&self) -> usize {
        fake_mpp::count_records(&std::fs::read_to_string(&self.session_file).unwrap())
    }

    /// The most sessions the doubles ever saw open at once.
    pub fn peak(&self) -> usize {
        std::fs::read_to_string(format!("{}.peak", self.session_file.display()))
            .map(|t| t.trim().parse().unwrap())
            .unwrap_or(0)
    }

    /// Hardware slot files of guards in the lock directory now.
    pub fn slot_files(&self) -> Vec<String> {
        std::fs::read_dir(self.lock_dir())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with("slot"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A vpuguardenc launch string whose hardware encoder is the MPP double
    /// `double` (with `double_props` appended to its properties), counting on
    /// this VPU; `extra` adds guard properties.
    pub fn guard_on(&self, double: &str, double_props: &str, extra: &str) -> String {
        format!(
            "vpuguardenc hw-encoder={double} session-file={sf} lock-dir={ld} \
             hw-properties=\"props,session-file={sf}{double_props}\" {extra}",
            sf = self.session_file.display(),
            ld = self.lock_dir().display(),
        )
    }

    /// A vpuguarddec launch string whose hardware decoder is the MPP decoder
    /// double (with `double_props` appended to its properties), counting on
    /// this VPU; `extra` adds guard properties.
    pub fn decoder_guard(&self, double_props: &str, extra: &str) -> String {
        format!(
            "vpuguarddec hw-decoder={double} session-file={sf} lock-dir={ld} \
             hw-properties=\"props,session-file={sf}{double_props}\" {extra}",
            double = super::fake_mpp_dec::FACTORY_NAME,
            sf = self.session_file.display(),
            ld = self.lock_dir().display(),
        )
    }

    /// Lets the guards see the listing as it is now: removes the snapshot
    /// they share in the lock directory, as `MAX_AGE` (200 ms) passing would.
    pub fn expire_snapshot(&self) {
        for entry in std::fs::read_dir(self.lock_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().ends_with(".snapshot") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Removes the directory.
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
