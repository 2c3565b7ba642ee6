fn main() {
    gst_plugin_version_helper::info();
    // The plugin's origin URL, as GStreamer's own `package-origin` build option: packagers set
    // the URL they ship from; otherwise GStreamer's wording for an unknown origin.
    println!("cargo:rerun-if-env-changed=GST_YOLO_PACKAGE_ORIGIN");
    let origin = std::env::var("GST_YOLO_PACKAGE_ORIGIN")
        .ok()
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| "Unknown package origin".into());
    println!("cargo:rustc-env=GST_YOLO_PACKAGE_ORIGIN_URL={origin}");
}
