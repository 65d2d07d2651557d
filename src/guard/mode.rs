// SPDX-License-Identifier: MPL-2.0
//! The `mode` property's enum, one per guard: each element keeps a GType of
//! its own (`GstVpuGuardEncMode`, `GstVpuGuardDecMode`), as applications and
//! gst-inspect-1.0 know them, with one definition behind both.

/// Defines `Mode` with the given GType name, and its conversion to the
/// budget's own mode.
macro_rules! guard_mode {
    ($type_name:literal) => {
        /// How the guard may choose.
        #[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
        #[repr(u32)]
        #[enum_type(name = $type_name)]
        pub enum Mode {
            #[default]
            #[enum_value(
                name = "Hardware while a VPU slot is free, software otherwise",
                nick = "auto"
            )]
            Auto = 0,
            #[enum_value(
                name = "Hardware only: fail with an error when no VPU slot is free",
                nick = "hardware"
            )]
            Hardware = 1,
            #[enum_value(name = "Software only: never touch the VPU", nick = "software")]
            Software = 2,
        }

        impl From<Mode> for $crate::vpu::decision::Mode {
            fn from(mode: Mode) -> Self {
                match mode {
                    Mode::Auto => Self::Auto,
                    Mode::Hardware => Self::Hardware,
                    Mode::Software => Self::Software,
                }
            }
        }
    };
}

pub(crate) use guard_mode;
