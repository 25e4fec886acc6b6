"""The browser decoder (pcld.js), shipped as package data of ``pointcloud.js``."""
