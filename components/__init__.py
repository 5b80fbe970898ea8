"""kfp v2 components: thin wrappers over ``longdoc.stages``.

``functions.py`` holds the body of each lightweight Python component. They import ``longdoc`` inside
the body because kfp ships only the function's source to the container; the image (the project's
Dockerfile) has the package installed, so no component pip-installs anything at run time.
``factory.build_components(image)`` turns them into components for a given image.
"""
