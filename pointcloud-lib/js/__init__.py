"""The browser modules, shipped as package data of ``pointcloud.js``: the PCLD decoder
(pcld.js) and the audio-reactive mapping and shader (audio-react.js)."""
